#!/usr/bin/env node
// Benchmark runner: `node dist/bench/run.js <scenario>... | all [--quick] [--out file.jsonl]` prints
// one JSON line per scenario on stdout; progress goes to stderr. Scenarios that need a process of their own fork this same
// script with `--child <name> <json spec>` and report back over IPC.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { locateLibrary } from '../broker/native/ffi_library.js';
import { PROFILE_DIR_ENV } from './bench_broker.js';
import { audioFanIn, audioSessions, runAudioCase, type AudioCaseSpec } from './audio_latency.js';
import { nativeQueue, runVariant, type VariantSpec } from './native_queue.js';
import { pythonAudio } from './python_audio.js';
import { realCallbacks, runRealCallbacks, type RealCallbackSpec } from './real_callbacks.js';
import { roundTrip, runRoundTrip, type RoundTripSpec } from './round_trip.js';
import { log, nowMs, round } from './stats.js';
import { runVideoCase, videoPayload, type VideoCaseSpec } from './video_payload.js';
import { workers } from './workers.js';

type Scenario = (quick: boolean) => Promise<Record<string, unknown>>;

// In the order `all` runs them: cheapest and least disturbed by what ran before first.
const SCENARIOS: Record<string, Scenario> = {
  native_queue: async (quick) => ({ ...(await nativeQueue(quick)), real_library_callbacks: await realCallbacks(quick) }),
  round_trip: roundTrip,
  audio: audioFanIn,
  python: pythonAudio,
  video: videoPayload,
  sessions: audioSessions,
  workers,
};

const CHILDREN: Record<string, (spec: unknown) => Promise<unknown>> = {
  native_queue: (spec) => runVariant(spec as VariantSpec),
  real_callbacks: (spec) => runRealCallbacks(spec as RealCallbackSpec),
  round_trip: (spec) => runRoundTrip(spec as RoundTripSpec),
  audio: (spec) => runAudioCase(spec as AudioCaseSpec),
  video: (spec) => runVideoCase(spec as VideoCaseSpec),
};

async function child(name: string, spec: string): Promise<void> {
  const run = CHILDREN[name];
  if (run === undefined) throw new Error(`unknown child scenario ${name}`);
  try {
    const result = await run(JSON.parse(spec));
    process.send!({ result });
  } catch (err) {
    process.send!({ error: String((err as Error)?.stack ?? err) });
  }
  // Native threads or handles may still hold the loop open; the result is delivered.
  process.disconnect();
  process.exit(0);
}

function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpu_model: cpus[0]?.model ?? 'unknown',
    memory_gib: round(os.totalmem() / 2 ** 30, 1),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    liblivekit_ffi: locateLibrary(undefined).version,
  };
}

const USAGE = `usage: node dist/bench/run.js <${[...Object.keys(SCENARIOS), 'all'].join('|')}>... [--quick] [--out results.jsonl] [--profile-broker dir]`;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(args[1]!, args[2]!);

  const quick = args.includes('--quick');
  const outAt = args.indexOf('--out');
  const out = outAt >= 0 ? args[outAt + 1] : undefined;
  if (outAt >= 0 && (out === undefined || out.startsWith('--'))) {
    process.stderr.write(`--out needs a file name\n${USAGE}\n`);
    process.exit(2);
  }
  const profileAt = args.indexOf('--profile-broker');
  if (profileAt >= 0) {
    const dir = args[profileAt + 1];
    if (dir === undefined || dir.startsWith('--')) {
      process.stderr.write(`--profile-broker needs a directory\n${USAGE}\n`);
      process.exit(2);
    }
    fs.mkdirSync(dir, { recursive: true });
    process.env[PROFILE_DIR_ENV] = path.resolve(dir);
  }
  const values = new Set([outAt, profileAt].filter((i) => i >= 0).map((i) => i + 1));
  const named = args.filter((a, i) => !a.startsWith('--') && !values.has(i));
  const names = named.includes('all') ? Object.keys(SCENARIOS) : named;
  const unknown = names.filter((n) => SCENARIOS[n] === undefined);
  if (names.length === 0 || unknown.length > 0) {
    process.stderr.write(`${unknown.length > 0 ? `unknown scenario ${unknown.join(', ')}\n` : ''}${USAGE}\n`);
    process.exit(2);
  }
  const command = `${process.env.npm_lifecycle_event === 'bench' ? 'npm run bench --' : 'node dist/bench/run.js'} ${args.join(' ')}`;
  if (out !== undefined) fs.writeFileSync(out, '');
  // One JSON line per scenario on stdout (and in --out); progress goes to stderr.
  for (const name of names) {
    const startedAt = nowMs();
    const started = new Date().toISOString();
    log(`scenario ${name}${quick ? ' (quick)' : ''}`);
    // Other work on the machine skews every figure here; the load averages make that visible.
    const loadBefore = os.loadavg().map((l) => round(l, 2));
    const results = await SCENARIOS[name]!(quick);
    const line = JSON.stringify({
      scenario: name,
      quick,
      started,
      wall_s: round((nowMs() - startedAt) / 1000, 1),
      command,
      machine: { ...machine(), loadavg_1_5_15_before: loadBefore, loadavg_1_5_15_after: os.loadavg().map((l) => round(l, 2)) },
      ...results,
    });
    process.stdout.write(line + '\n');
    if (out !== undefined) fs.appendFileSync(out, line + '\n');
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${String(err?.stack ?? err)}\n`);
  process.exit(1);
});
