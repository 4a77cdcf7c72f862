// The worker processes of the `workers` benchmark, one kind per SDK, behind one interface: each
// sets itself up, says it is ready, starts on go (so that every worker of a case runs in the same
// window), and hands back one result.
//  - Python: bench/workers_python.py on the livekit SDK, JSON lines on stdout, "go" on stdin;
//    through the broker when LIVEKIT_FFI_BROKER is set (client/python's .pth activation).
//  - Node: dist/bench/workers_node.js, forked, over IPC.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import type { AudioRun } from './audio_workload.js';
import type { PathKind } from './ffi_path.js';
import { pythonExe } from './python_audio.js';
import type { NodeWorkerSpec } from './workers_node.js';

export type Sdk = 'python' | 'node';

export interface WorkerSpec {
  sdk: Sdk;
  path: PathKind;
  /** The broker's address (broker path). */
  address?: string;
  index: number;
  streams: number;
  captureOnly: number;
  queueSizeMs: number;
  warmupS: number;
  measureS: number;
}

/** The figures every worker reports (python_audio.py's run() and audio_workload.ts's runAudio share these names). */
export type WorkerResult = Pick<AudioRun, 'frames_captured' | 'frames_received' | 'frames_lost' | 'capture_errors' | 'latency_ms'> & {
  capture_only_frames_captured?: number;
  latencies_ms: number[];
  [key: string]: unknown;
};

export interface WorkerProcess {
  readonly pid: number;
  readonly ready: Promise<void>;
  go(): void;
  /** Lets it exit once it has sent its result (it waits, so that the window's end finds it alive). */
  release(): void;
  readonly result: Promise<WorkerResult>;
  kill(): void;
}

const repoRoot = path.resolve(__dirname, '..', '..');

/** Wires a started process to the ready/go/result protocol; `onMessage` is fed its parsed messages. */
function track(proc: ChildProcess, label: string, send: (word: 'go' | 'exit') => void, timeoutMs: number): { worker: WorkerProcess; onMessage: (m: Record<string, unknown>) => void } {
  let stderr = '';
  proc.stderr?.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  let setReady!: (err?: Error) => void;
  const ready = new Promise<void>((resolve, reject) => (setReady = (err) => (err ? reject(err) : resolve())));
  ready.catch(() => {}); // observed by the caller
  let result: WorkerResult | undefined;
  let error: string | undefined;
  const onMessage = (m: Record<string, unknown>) => {
    if (m.event === 'ready') setReady();
    else if ('result' in m) result = m.result as WorkerResult;
    else if ('error' in m) {
      error = String(m.error);
      setReady(new Error(`${label}: ${error}`)); // no effect once ready
    }
  };
  const exited = new Promise<WorkerResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      error ??= `timed out after ${timeoutMs} ms`;
      proc.kill('SIGKILL');
    }, timeoutMs);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (result !== undefined) resolve(result);
      else reject(new Error(`${label}: ${error ?? `exited (${code ?? signal}) without a result`}${stderr ? `; stderr: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`));
    });
  });
  exited.catch((err) => setReady(err)); // a worker that dies before it is ready fails `ready` too
  const worker: WorkerProcess = {
    pid: proc.pid!,
    ready,
    go: () => send('go'),
    release: () => send('exit'),
    result: exited,
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
  return { worker, onMessage };
}

function startPython(spec: WorkerSpec, timeoutMs: number): WorkerProcess {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.LIVEKIT_FFI_BROKER;
  if (spec.path === 'broker') env.LIVEKIT_FFI_BROKER = spec.address;
  const args = [path.join(repoRoot, 'bench', 'workers_python.py'), '--streams', String(spec.streams), '--capture-only', String(spec.captureOnly)];
  args.push('--seconds', String(spec.measureS), '--warmup', String(spec.warmupS), '--queue-ms', String(spec.queueSizeMs));
  const proc = spawn(pythonExe(), args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  proc.stdin!.on('error', () => {}); // it exited: its exit reports that
  const { worker, onMessage } = track(proc, `python worker ${spec.index}`, (word) => proc.stdin!.write(`${word}\n`), timeoutMs);
  readline.createInterface({ input: proc.stdout! }).on('line', (line) => {
    try {
      onMessage(JSON.parse(line));
    } catch {
      // not a protocol line
    }
  });
  return worker;
}

function startNode(spec: WorkerSpec, timeoutMs: number): WorkerProcess {
  const nodeSpec: NodeWorkerSpec = { ...spec };
  const proc = fork(path.join(__dirname, 'workers_node.js'), [JSON.stringify(nodeSpec)], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  const { worker, onMessage } = track(proc, `node worker ${spec.index}`, (word) => proc.connected && proc.send(word), timeoutMs);
  proc.on('message', (m) => onMessage(m as Record<string, unknown>));
  return worker;
}

export function startWorker(spec: WorkerSpec, timeoutMs: number): WorkerProcess {
  return spec.sdk === 'python' ? startPython(spec, timeoutMs) : startNode(spec, timeoutMs);
}
