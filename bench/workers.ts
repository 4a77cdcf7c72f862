// `workers`: a benchmark shaped like a deployment. N worker processes (Python SDK or Node), each
// with 2 inbound audio streams (source → track → stream, captured into and read back) and 1
// capture-only source (the agent's TTS output), 10 ms frames at real-time pace, for a fixed
// window; in-process (every worker loads its own liblivekit_ffi) against the broker (one broker
// process, every worker a Session of it). Reported per case over the window: aggregate CPU of every
// process (broker included), summed PSS and thread count (sampled mid-window), frame latency
// (exact per frame, as the other audio scenarios), frames captured / received / lost.
import { execFileSync } from 'node:child_process';
import { QUEUE_MS as NODE_QUEUE_MS } from './audio_latency.js';
import { startBenchBroker } from './bench_broker.js';
import type { PathKind } from './ffi_path.js';
import { UsageWindow } from './proc_usage.js';
import { pythonExe } from './python_audio.js';
import { log, round, sleep, summarize } from './stats.js';
import { startWorker, type Sdk, type WorkerProcess, type WorkerResult } from './worker_processes.js';

const COUNTS = [1, 10, 25];
const QUICK_COUNTS = [1, 10];
/** LKB_BENCH_WORKERS="node:10" (or "python", "10,25", "node:1,10"): only those SDKs and counts, for a look at one case. */
const ONLY = /^(?:(python|node):?)?([\d,]*)$/.exec(process.env.LKB_BENCH_WORKERS ?? '');
const INBOUND = 2;
const CAPTURE_ONLY = 1;
/** Source queues: the Python SDK's default (AudioSource's queue_size_ms); Node as the audio scenarios (bench/audio_latency.ts, LKB_BENCH_QUEUE_MS). */
const QUEUE_MS: Record<Sdk, number> = { python: 1000, node: NODE_QUEUE_MS };
/** Time allowed for every worker of a case to start and set up (25 Python interpreters on 2 cores). */
const READY_TIMEOUT_MS = 180_000;

interface Timing {
  warmupS: number;
  measureS: number;
}

async function runCase(sdk: Sdk, path: PathKind, workers: number, t: Timing): Promise<Record<string, unknown>> {
  const broker = path === 'broker' ? await startBenchBroker() : null;
  const procs: WorkerProcess[] = [];
  const setupStarted = Date.now();
  try {
    const timeoutMs = READY_TIMEOUT_MS + (t.warmupS + t.measureS + 60) * 1000;
    for (let index = 0; index < workers; index++) {
      const spec = { sdk, path, index, streams: INBOUND, captureOnly: CAPTURE_ONLY, queueSizeMs: QUEUE_MS[sdk], ...t };
      procs.push(startWorker(broker ? { ...spec, address: broker.address } : spec, timeoutMs));
    }
    await Promise.all(procs.map((w) => w.ready));
    const setupS = (Date.now() - setupStarted) / 1000;
    const usage = new UsageWindow({ workers: procs.map((w) => w.pid), ...(broker ? { broker: [broker.proc.pid!] } : {}) });
    // Every worker starts now; its measured window is its captures from warmupS on, and ours the
    // same stretch of wall time.
    for (const w of procs) w.go();
    await sleep(t.warmupS * 1000);
    usage.start();
    await sleep((t.measureS * 1000) / 2);
    usage.sampleMemory();
    await sleep((t.measureS * 1000) / 2);
    const used = usage.end();
    for (const w of procs) w.release();
    const settled = await Promise.allSettled(procs.map((w) => w.result));
    const results = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const errors = settled.flatMap((s) => (s.status === 'rejected' ? [String((s.reason as Error)?.message ?? s.reason)] : []));
    return { sdk, path, workers, setup_s: round(setupS, 1), usage: used, ...frames(results, workers, t), workers_failed: errors.length, ...(errors.length > 0 ? { first_error: errors[0] } : {}) };
  } finally {
    for (const w of procs) w.kill();
    await broker?.stop();
  }
}

/** The frames of every worker together; latency percentiles over all their frames. */
function frames(results: WorkerResult[], workers: number, t: Timing): Record<string, unknown> {
  const sum = (f: (r: WorkerResult) => number | undefined) => results.reduce((a, r) => a + (f(r) ?? 0), 0);
  const perSource = Math.round(t.measureS * 100);
  const inboundDue = workers * INBOUND * perSource;
  const outboundDue = workers * CAPTURE_ONLY * perSource;
  const captured = sum((r) => r.frames_captured);
  const outbound = sum((r) => r.capture_only_frames_captured);
  const latencies = results.flatMap((r) => r.latencies_ms);
  const inWindow = sum((r) => r.captures_in_window as number);
  return {
    frames_due: inboundDue,
    frames_captured: captured,
    frames_received: sum((r) => r.frames_received),
    frames_lost: sum((r) => r.frames_lost),
    capture_only_frames_due: outboundDue,
    capture_only_frames_captured: outbound,
    capture_errors: sum((r) => r.capture_errors),
    captures_in_window: inWindow,
    /** Captures sent inside the window, of those real time asks for there, over every source (inbound and capture-only). */
    real_time_pct: round((100 * inWindow) / (inboundDue + outboundDue), 1),
    latency_ms: summarize(latencies, 2),
    silent_frames: sum((r) => r.silent_frames as number),
    undecodable_frames: sum((r) => r.undecodable_frames as number),
    // Per worker, in start order: how evenly the path served them.
    per_worker_captures_in_window: results.map((r) => r.captures_in_window),
    per_worker_frames_received: results.map((r) => r.frames_received),
    per_worker_p99_ms: results.map((r) => r.latency_ms.p99),
  };
}

const METHOD =
  `N worker processes per case, each: ${INBOUND} inbound streams (source -> track -> stream, a ramp captured in 10 ms frames at real-time pace ` +
  `and read back) and ${CAPTURE_ONLY} capture-only source (source -> track, captured into at the same pace: the agent's TTS output). ` +
  'Python workers: bench/workers_python.py (bench/python_audio.py\'s workload, public livekit.rtc API, one task per source awaiting capture_frame, ' +
  `source queue ${QUEUE_MS.python} ms), in-process = the SDK's bundled liblivekit_ffi, broker = LIVEKIT_FFI_BROKER set. ` +
  `Node workers: dist/bench/workers_node.js (bench/audio_workload.ts, captures issued on schedule without awaiting them, source queue ${QUEUE_MS.node} ms), ` +
  "in-process = @livekit/rtc-ffi-bindings' Node-API module, broker = this project's TypeScript client. Broker path: one fresh broker per case. " +
  'Every worker sets up, then all start together; the window is warmup_s after the start, measure_s long. usage: /proc/<pid>/stat utime+stime ' +
  'deltas over the window for every worker process and the broker (their live descendants included), and PSS (smaps_rollup), RSS and ' +
  'threads (status) summed at mid-window; the benchmark runner itself is not counted. Latency per frame = receive time - send time of ' +
  'the capture holding its last non-silent sample, in the worker; percentiles over every frame of every worker. real_time_pct = captures ' +
  'sent inside the window (by the clock; per source at most the window\'s worth) / captures due there, over every source (a Python worker that cannot keep up captures fewer; the Node workload issues every capture on ' +
  'time and shows a shortfall as lost frames and latency).';

export async function workers(quick: boolean): Promise<Record<string, unknown>> {
  const timing: Timing = quick ? { warmupS: 0.5, measureS: 3 } : { warmupS: 1, measureS: 10 };
  const python = execFileSync(pythonExe(), ['-c', 'import sys, livekit.rtc; print(sys.version.split()[0], livekit.rtc.__version__)'], {
    encoding: 'utf8',
    env: { ...process.env, LIVEKIT_FFI_BROKER: '' },
  }).trim();
  const cases: Record<string, unknown>[] = [];
  const sdks = ONLY?.[1] ? [ONLY[1] as Sdk] : (['python', 'node'] as const);
  const counts = ONLY?.[2] ? ONLY[2].split(',').map(Number) : quick ? QUICK_COUNTS : COUNTS;
  for (const sdk of sdks) {
    for (const n of counts) {
      // In-process and broker back to back at each N, so drifting load on the machine hits both alike.
      for (const path of ['in-process', 'broker'] as const) {
        log(`workers: ${n} ${sdk} workers, ${path}, ${timing.warmupS} s warm-up + ${timing.measureS} s`);
        try {
          const c = await runCase(sdk, path, n, timing);
          cases.push(c);
          logCase(c);
        } catch (err) {
          log(`  failed: ${String(err)}`);
          cases.push({ sdk, path, workers: n, error: String((err as Error)?.message ?? err) });
        }
        await sleep(500);
      }
    }
  }
  return { workers: { python_and_sdk: python, method: METHOD, inbound_streams: INBOUND, capture_only_sources: CAPTURE_ONLY, queue_size_ms: QUEUE_MS, warmup_s: timing.warmupS, measure_s: timing.measureS, cases } };
}

function logCase(c: Record<string, any>): void { // eslint-disable-line @typescript-eslint/no-explicit-any
  const u = c.usage.total;
  log(
    `  cpu ${u.cpu_s} s, pss ${u.pss_mib} MiB, ${u.threads} threads, ${c.real_time_pct}% real time, ${c.frames_received}/${c.frames_captured} frames, ` +
      `${c.frames_lost} lost, p50 ${c.latency_ms.p50} ms, p99 ${c.latency_ms.p99} ms${c.workers_failed ? `, ${c.workers_failed} workers failed: ${c.first_error}` : ''}`,
  );
}
