// Real processes for the tests: a broker started from the built CLI on a Unix socket in a fresh
// temporary directory, and worker scripts that speak JSON lines on stdout.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { BrokerClient } from '../../client/broker_client.js';
import type { InfoResponse } from '../../proto/gen/ffi_broker_pb.js';

const distRoot = path.resolve(__dirname, '..', '..');
export const CLI = path.join(distRoot, 'broker', 'cli.js');
export const WORKERS = path.join(distRoot, 'test', 'workers');

export interface BrokerProcess {
  address: string;
  socketPath: string;
  proc: ChildProcess;
  /** Every log line the broker printed, parsed. */
  logs: Record<string, unknown>[];
  info(): Promise<InfoResponse>;
  /** What it printed on stderr (a library panic's message, for one). */
  stderr(): string;
  /** SIGTERM (unless a signal was sent already), then wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
}

export function tempDir(prefix = 'lkb-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Starts the broker CLI. It listens on a fresh Unix socket unless `listen` names another address
 * (e.g. 127.0.0.1:0); `address` is then the one it reports having bound. `nodeArgs` go to node
 * itself (e.g. --cpu-prof, which NODE_OPTIONS does not take).
 */
export async function startBroker(extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}, listen?: string, nodeArgs: string[] = []): Promise<BrokerProcess> {
  const socketPath = path.join(tempDir(), 'broker.sock');
  let address = listen ?? `unix://${socketPath}`;
  const proc = spawn(process.execPath, [...nodeArgs, CLI, 'serve', '--listen', address, '--log-level', 'debug', ...extraArgs], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const listening = new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: proc.stdout! }).on('line', (line) => {
      try {
        const record = JSON.parse(line);
        logs.push(record);
        if (record.msg === 'listening') {
          address = String(record.address);
          resolve();
        }
      } catch {
        logs.push({ raw: line });
      }
    });
    proc.once('exit', (code) => reject(new Error(`broker exited (${code}) before listening: ${stderr}`)));
  });
  await withTimeout(listening, 15000, 'broker did not start listening');
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    address,
    socketPath: listen === undefined ? socketPath : '',
    proc,
    logs,
    info: () => BrokerClient.info(address),
    stderr: () => stderr,
    stop: async () => {
      if (!proc.killed && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

export interface WorkerProcess {
  proc: ChildProcess;
  /** Resolves with the first JSON line that has `key`. */
  next<T = Record<string, unknown>>(key: string, timeoutMs?: number): Promise<T>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

export function spawnWorker(command: string, args: string[], env: NodeJS.ProcessEnv = {}): WorkerProcess {
  const isNodeScript = command.endsWith('.js');
  const proc = spawn(isNodeScript ? process.execPath : command, isNodeScript ? [command, ...args] : args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const lines: Record<string, unknown>[] = [];
  const waiters: { key: string; resolve: (v: never) => void }[] = [];
  readline.createInterface({ input: proc.stdout! }).on('line', (line) => {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line);
    } catch {
      return;
    }
    const waiter = waiters.find((w) => w.key in record);
    if (waiter === undefined) {
      lines.push(record);
      return;
    }
    waiters.splice(waiters.indexOf(waiter), 1);
    waiter.resolve(record[waiter.key] as never);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    proc,
    exited,
    stderr: () => stderr,
    next: <T>(key: string, timeoutMs = 30000) => {
      const seen = lines.find((l) => key in l);
      if (seen !== undefined) {
        lines.splice(lines.indexOf(seen), 1);
        return Promise.resolve(seen[key] as T);
      }
      const errorLine = lines.find((l) => 'error' in l);
      if (errorLine !== undefined) return Promise.reject(new Error(`worker failed: ${String(errorLine.error)}`));
      return withTimeout(
        new Promise<T>((resolve, reject) => {
          waiters.push({ key, resolve: resolve as (v: never) => void });
          waiters.push({ key: 'error', resolve: ((e: unknown) => reject(new Error(`worker failed: ${String(e)}`))) as (v: never) => void });
          void exited.then(({ code, signal }) => reject(new Error(`worker exited (${code ?? signal}) before "${key}": ${stderr}`)));
        }),
        timeoutMs,
        `worker did not print "${key}" in ${timeoutMs} ms: ${stderr}`,
      );
    },
  };
}

export interface Progress {
  at: number;
  frames: number;
}

/** Every {"progress"} line of a worker, as it arrives (next() would hand out stale ones). */
export function watchProgress(worker: WorkerProcess): Progress[] {
  const seen: Progress[] = [];
  readline.createInterface({ input: worker.proc.stdout! }).on('line', (line) => {
    try {
      const record = JSON.parse(line);
      if (record.progress !== undefined) seen.push({ at: Date.now(), frames: record.progress.frames });
    } catch {
      // not a JSON line
    }
  });
  return seen;
}

export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]);
}

/** Polls `probe` every 20 ms until it returns true; returns the ms it took. */
export async function waitFor(probe: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await probe()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One broker and one client for a whole test file: started before its tests, stopped (and checked to exit 0) after. */
export function brokerForFile(): { broker: BrokerProcess; client: BrokerClient } {
  const shared = {} as { broker: BrokerProcess; client: BrokerClient };
  before(async () => {
    shared.broker = await startBroker();
    shared.client = await BrokerClient.connect(shared.broker.address);
  });
  after(async () => {
    await shared.client.close();
    assert.equal(await shared.broker.stop(), 0);
  });
  return shared;
}
