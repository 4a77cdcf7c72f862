#!/usr/bin/env node
// Benchmark runner: `node dist/bench/run.js <scenario> [--quick]` prints one JSON object on
// stdout; progress goes to stderr. Scenarios that need a process of their own fork this same
// script with `--child <name> <json spec>` and report back over IPC.
import os from 'node:os';
import { audioLatency } from './audio_latency.js';
import { nativeQueue, runVariant, type VariantSpec } from './native_queue.js';
import { pythonAudio } from './python_audio.js';
import { log, nowMs, round } from './stats.js';

interface Context {
  quick: boolean;
  /** Filled in by scenarios that learn it (the broker reports the library's version). */
  ffiVersion?: string;
}

const SCENARIOS: Record<string, (ctx: Context) => Promise<Record<string, unknown>>> = {
  core: async (ctx) => {
    const native = await nativeQueue(ctx.quick);
    const audio = await audioLatency(ctx.quick);
    ctx.ffiVersion = audio.ffi_version;
    return { ...native, audio_latency: audio };
  },
  python: (ctx) => pythonAudio(ctx.quick),
};

const CHILDREN: Record<string, (spec: unknown) => Promise<unknown>> = {
  native_queue: (spec) => runVariant(spec as VariantSpec),
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

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(args[1]!, args[2]!);

  const quick = args.includes('--quick');
  const names = args.filter((a) => !a.startsWith('--'));
  if (names.length !== 1 || SCENARIOS[names[0]!] === undefined) {
    process.stderr.write(`usage: node dist/bench/run.js <${Object.keys(SCENARIOS).join('|')}> [--quick]\n`);
    process.exit(2);
  }
  const name = names[0]!;
  const ctx: Context = { quick };
  const startedAt = nowMs();
  const started = new Date().toISOString();
  log(`scenario ${name}${quick ? ' (quick)' : ''}`);
  // Other work on the machine skews every figure here; the load averages make that visible.
  const loadBefore = os.loadavg().map((l) => round(l, 2));
  const results = await SCENARIOS[name]!(ctx);
  const cpus = os.cpus();
  const report = {
    scenario: name,
    quick,
    started,
    wall_s: round((nowMs() - startedAt) / 1000, 1),
    machine: {
      cpus: cpus.length,
      cpu_model: cpus[0]?.model ?? 'unknown',
      node: process.version,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      loadavg_1_5_15_before: loadBefore,
      loadavg_1_5_15_after: os.loadavg().map((l) => round(l, 2)),
      liblivekit_ffi: ctx.ffiVersion ?? null,
      command: process.env.npm_lifecycle_event === 'bench' ? `npm run bench -- ${args.join(' ')}` : `node dist/bench/run.js ${args.join(' ')}`,
    },
    ...results,
  };
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${String(err?.stack ?? err)}\n`);
  process.exit(1);
});
