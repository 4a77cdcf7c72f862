// Audio scenarios on the real liblivekit_ffi, no LiveKit server (the workload is audio_workload.ts):
//  - audio_fanin: N streams at 100 frames/s each from one Node client through the broker, beside the
//    same workload in-process on @livekit/rtc-ffi-bindings;
//  - sessions: 1, 10, 100 concurrent broker sessions with one stream each.
// Every case runs in a child process of its own; broker cases share one broker process per scenario.
import fs from 'node:fs';
import type { BrokerProcess } from '../test/helpers/processes.js';
import { startBenchBroker } from './bench_broker.js';
import { runAudio, type AudioRun } from './audio_workload.js';
import { runInChild } from './child.js';
import { brokerPath, inProcessPath, type FfiPath, type PathKind } from './ffi_path.js';
import { procCpuS, procRssMiB } from '../test/helpers/proc_stats.js';
import { log, round, sleep } from './stats.js';

/**
 * The sources' queue: 0, so a captured frame goes straight to the track and the latency measured is
 * the path's (request in, event out), not how far ahead of real time the capture loop got. With the
 * SDKs' default of 1000 ms the queue's fill level, set by start-up hiccups, dominates and varies
 * from run to run (BENCHMARKS.md). LKB_BENCH_QUEUE_MS overrides it.
 */
export const QUEUE_MS = Number(process.env.LKB_BENCH_QUEUE_MS ?? 0);
const FANIN_STREAMS = [2, 20, 100, 200];
const QUICK_FANIN_STREAMS = [2, 20];
const SESSION_COUNTS = [1, 10, 50, 100];
const QUICK_SESSION_COUNTS = [1, 10];
/** A path that loses more than this share of frames at N streams is not run at larger N. */
export const KEEPS_UP_LOSS = 0.05;

export interface AudioCaseSpec {
  path: PathKind;
  address?: string;
  brokerPid?: number;
  sessions: number;
  streamsPerSession: number;
  warmupS: number;
  measureS: number;
}

export interface AudioCaseResult extends AudioRun {
  path: PathKind;
  sessions: number;
  /** CPU seconds over the measured window: this client process, the broker process (broker path). */
  cpu_s: { client: number; broker: number | null; total: number | null };
  cpu_s_per_1000_frames: number | null;
  broker_rss_mib: { start: number | null; end: number | null };
  client_rss_mib: number | null;
}

/** One case, in a child process of run.js. */
export async function runAudioCase(spec: AudioCaseSpec): Promise<AudioCaseResult> {
  const paths: FfiPath[] = [];
  for (let i = 0; i < (spec.path === 'broker' ? spec.sessions : 1); i++) {
    paths.push(spec.path === 'broker' ? await brokerPath(spec.address!, { clientName: `bench-audio-${i}` }) : inProcessPath());
  }
  let cpu0 = process.cpuUsage();
  let brokerCpu0: number | null = null;
  let cpu = { client: 0, broker: null as number | null };
  const rss = { start: null as number | null, end: null as number | null };
  try {
    const run = await runAudio(paths, {
      streamsPerPath: spec.path === 'broker' ? spec.streamsPerSession : spec.sessions * spec.streamsPerSession,
      queueSizeMs: QUEUE_MS,
      warmupS: spec.warmupS,
      measureS: spec.measureS,
      onMeasure: (phase) => {
        if (phase === 'start') {
          cpu0 = process.cpuUsage();
          brokerCpu0 = procCpuS(spec.brokerPid);
          rss.start = procRssMiB(spec.brokerPid);
          return;
        }
        const used = process.cpuUsage(cpu0);
        const brokerCpu1 = procCpuS(spec.brokerPid);
        cpu = { client: (used.user + used.system) / 1e6, broker: brokerCpu0 !== null && brokerCpu1 !== null ? brokerCpu1 - brokerCpu0 : null };
        rss.end = procRssMiB(spec.brokerPid);
      },
    });
    const total = spec.path === 'broker' ? (cpu.broker === null ? null : cpu.client + cpu.broker) : cpu.client;
    return {
      path: spec.path,
      sessions: spec.sessions,
      ...run,
      cpu_s: { client: round(cpu.client, 3)!, broker: cpu.broker === null ? null : round(cpu.broker, 3), total: total === null ? null : round(total, 3) },
      cpu_s_per_1000_frames: total === null || run.frames_captured === 0 ? null : round(total / (run.frames_captured / 1000), 4),
      broker_rss_mib: { start: rss.start === null ? null : round(rss.start, 1), end: rss.end === null ? null : round(rss.end, 1) },
      client_rss_mib: round(procRssMiB(process.pid) ?? NaN, 1),
    };
  } finally {
    // Ending a session makes the broker drop its sources, tracks and streams; in-process the
    // process exits right after.
    await Promise.all(paths.map((p) => p.close()));
  }
}

/** One broker for a scenario, replaced if it died or its socket vanished (shared temp dirs get cleaned). */
class BrokerKeeper {
  private broker: BrokerProcess | undefined;
  restarts = 0;
  ffiVersion: string | undefined;

  async get(): Promise<BrokerProcess> {
    const b = this.broker;
    if (b !== undefined && fs.existsSync(b.socketPath) && b.proc.exitCode === null && b.proc.signalCode === null) return b;
    if (b !== undefined) {
      log('  broker socket gone or broker exited: starting a new broker');
      await b.stop();
      this.restarts++;
    }
    this.broker = await startBenchBroker();
    this.ffiVersion ??= (await this.broker.info()).ffiVersion;
    return this.broker;
  }

  async stop(): Promise<void> {
    await this.broker?.stop();
  }
}

type CaseOutcome = AudioCaseResult | { path: PathKind; sessions: number; streams: number; error: string };

async function runCase(keeper: BrokerKeeper | null, spec: Omit<AudioCaseSpec, 'address' | 'brokerPid'>): Promise<CaseOutcome> {
  const streams = spec.sessions * spec.streamsPerSession;
  try {
    const broker = keeper === null ? undefined : await keeper.get();
    const full: AudioCaseSpec = { ...spec, ...(broker ? { address: broker.address, brokerPid: broker.proc.pid! } : {}) };
    const timeoutMs = (spec.warmupS + spec.measureS + 120) * 1000;
    const r = await runInChild<AudioCaseResult>('audio', full, timeoutMs);
    log(`  ${r.path}: p50 ${r.latency_ms.p50} ms, p99 ${r.latency_ms.p99} ms, ${r.frames_received}/${r.frames_captured} frames, ${r.frames_lost} lost, cpu ${r.cpu_s_per_1000_frames} s/1000 frames`);
    await sleep(300); // let the broker finish tearing the previous session down
    return r;
  } catch (err) {
    log(`  ${spec.path} failed: ${String(err)}`);
    return { path: spec.path, sessions: spec.sessions, streams, error: String((err as Error)?.message ?? err) };
  }
}

const lossShare = (r: CaseOutcome) => ('error' in r ? 1 : r.frames_lost / Math.max(1, r.frames_captured));

const METHOD =
  `per stream NewAudioSource(48 kHz mono, queue ${QUEUE_MS} ms) -> CreateAudioTrack -> NewAudioStream; a ramp captured in 10 ms frames at ` +
  'real-time pace into every source, frames received back; latency = receive time - send time of the capture holding the frame\'s last ' +
  'non-silent sample (process.hrtime). Each case in a fresh client process; cpu = client process (getrusage) + broker process ' +
  '(/proc/<pid>/stat) over the measured window; in-process the library\'s threads are in the client process.';

export async function audioFanIn(quick: boolean): Promise<Record<string, unknown>> {
  const warmupS = quick ? 0.5 : 1;
  const measureS = quick ? 2 : 5;
  const keeper = new BrokerKeeper();
  const cases: CaseOutcome[] = [];
  const skipped: string[] = [];
  try {
    for (const path of ['in-process', 'broker'] as const) {
      for (const streams of quick ? QUICK_FANIN_STREAMS : FANIN_STREAMS) {
        const previous = cases.filter((c) => c.path === path).at(-1);
        if (previous !== undefined && lossShare(previous) > KEEPS_UP_LOSS) {
          skipped.push(`${path} ${streams} streams: it lost ${round(lossShare(previous) * 100, 1)}% at fewer streams`);
          continue;
        }
        log(`audio_fanin: ${path}, ${streams} streams, ${warmupS} s warm-up + ${measureS} s`);
        cases.push(await runCase(path === 'broker' ? keeper : null, { path, sessions: 1, streamsPerSession: streams, warmupS, measureS }));
      }
    }
  } finally {
    await keeper.stop();
  }
  return { audio_fanin: { ffi_version: keeper.ffiVersion ?? null, method: METHOD, warmup_s: warmupS, measure_s: measureS, queue_size_ms: QUEUE_MS, broker_restarts: keeper.restarts, skipped, cases } };
}

export async function audioSessions(quick: boolean): Promise<Record<string, unknown>> {
  const warmupS = quick ? 0.5 : 1;
  const measureS = quick ? 2 : 5;
  const keeper = new BrokerKeeper();
  const cases: CaseOutcome[] = [];
  try {
    for (const sessions of quick ? QUICK_SESSION_COUNTS : SESSION_COUNTS) {
      log(`sessions: ${sessions} broker sessions with one stream each`);
      cases.push(await runCase(keeper, { path: 'broker', sessions, streamsPerSession: 1, warmupS, measureS }));
    }
  } finally {
    await keeper.stop();
  }
  return {
    sessions: {
      ffi_version: keeper.ffiVersion ?? null,
      method: `${METHOD} The sessions are Session streams of one client process (each its own BrokerClient); latency_p99_ms_by_path is each session's p99.`,
      warmup_s: warmupS,
      measure_s: measureS,
      broker_restarts: keeper.restarts,
      cases,
    },
  };
}
