// The livekit Python SDK (PyPI livekit, unchanged) capturing and receiving audio, in-process and
// through the broker, side by side in one run: bench/python_audio.py runs once with the SDK's own
// bundled liblivekit_ffi (no LIVEKIT_FFI_BROKER) and once routed through a real broker started
// here (LIVEKIT_FFI_BROKER=<its address>, client/python's .pth activation), for each stream count.
// Runs are sequential: two cores, and every figure is sensitive to other work on the machine.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { BrokerProcess } from '../test/helpers/processes.js';
import { KEEPS_UP_LOSS } from './audio_latency.js';
import { startBenchBroker } from './bench_broker.js';
import { procCpuS } from '../test/helpers/proc_stats.js';
import { log, round, sleep } from './stats.js';

const STREAM_COUNTS = [2, 20, 50];
const QUICK_STREAM_COUNTS = [2];
/** The SDK's default source queue (AudioSource's queue_size_ms default). */
const QUEUE_MS = 1000;

const repoRoot = path.resolve(__dirname, '..', '..');
const SCRIPT = path.join(repoRoot, 'bench', 'python_audio.py');

export function pythonExe(): string {
  const fromEnv = process.env.LIVEKIT_BENCH_PYTHON;
  if (fromEnv) return fromEnv;
  const venv = path.join(repoRoot, 'build', 'pyvenv', 'bin', 'python');
  if (fs.existsSync(venv)) return venv;
  throw new Error(`no Python: ${venv} is missing (scripts/test-python.sh creates it) and LIVEKIT_BENCH_PYTHON is unset`);
}

interface PyRun {
  result?: Record<string, unknown>;
  error?: string;
  /** Broker CPU seconds between the script's measure_start and measure_end lines. */
  brokerCpuS?: number | null;
  /** The Python process's exit code and the last of its stderr. */
  exit: number | null;
  stderrTail: string;
  wallS: number;
}

async function runScript(streams: number, seconds: number, warmup: number, broker: BrokerProcess | null): Promise<PyRun> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.LIVEKIT_FFI_BROKER;
  if (broker !== null) env.LIVEKIT_FFI_BROKER = broker.address;
  const args = [SCRIPT, '--streams', String(streams), '--seconds', String(seconds), '--warmup', String(warmup), '--queue-ms', String(QUEUE_MS)];
  const started = Date.now();
  const proc = spawn(pythonExe(), args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const out: PyRun = { exit: null, stderrTail: '', wallS: 0 };
  let brokerCpu0: number | null = null;
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line);
    } catch {
      return;
    }
    if (record.event === 'measure_start') brokerCpu0 = broker ? procCpuS(broker.proc.pid) : null;
    else if (record.event === 'measure_end' && broker !== null) {
      const now = procCpuS(broker.proc.pid);
      out.brokerCpuS = now !== null && brokerCpu0 !== null ? round(now - brokerCpu0, 3) : null;
    } else if ('result' in record) out.result = record.result as Record<string, unknown>;
    else if ('error' in record) out.error = String(record.error);
  });
  const timeoutMs = (warmup + seconds + 60) * 1000;
  const exit = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => {
      out.error ??= `timed out after ${timeoutMs} ms`;
      proc.kill('SIGKILL');
    }, timeoutMs);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal ? -1 : null));
    });
  });
  out.exit = exit;
  out.stderrTail = stderr.trim().split('\n').slice(-5).join('\n');
  out.wallS = round((Date.now() - started) / 1000, 1)!;
  if (out.result === undefined) out.error ??= `python exited ${exit} without a result: ${out.stderrTail}`;
  return out;
}

export async function pythonAudio(quick: boolean): Promise<Record<string, unknown>> {
  const warmup = quick ? 0.5 : 1;
  const seconds = quick ? 2 : 5;
  const python = pythonExe();
  const versions = execFileSync(python, ['-c', 'import sys, livekit.rtc, livekit_ffi_broker; print(sys.version.split()[0], livekit.rtc.__version__)'], {
    encoding: 'utf8',
    env: { ...process.env, LIVEKIT_FFI_BROKER: '' },
  }).trim();
  const cases: Record<string, unknown>[] = [];
  const skipped: string[] = [];
  // A path that fell short at N streams is not run at larger N.
  const fellShort = { in_process: false, broker: false };
  const keptUp = (run: PyRun, streams: number) => Number(run.result?.frames_received ?? 0) >= (1 - KEEPS_UP_LOSS) * streams * seconds * 100;
  for (const streams of quick ? QUICK_STREAM_COUNTS : STREAM_COUNTS) {
    let inproc: PyRun | undefined;
    if (fellShort.in_process) skipped.push(`in_process ${streams} streams: it fell short at fewer streams`);
    else {
      log(`python_audio: ${streams} streams in-process, ${warmup} s warm-up + ${seconds} s`);
      inproc = await runScript(streams, seconds, warmup, null);
      logRun(inproc);
      fellShort.in_process = !keptUp(inproc, streams);
      await sleep(200);
    }

    let viaBroker: PyRun | undefined;
    let info: Awaited<ReturnType<BrokerProcess['info']>> | undefined;
    let brokerCpuTotal: number | null = null;
    if (fellShort.broker) skipped.push(`broker ${streams} streams: it fell short at fewer streams`);
    else {
      log(`python_audio: ${streams} streams through the broker`);
      const broker = await startBenchBroker();
      try {
        info = await broker.info();
        const cpuAtStart = procCpuS(broker.proc.pid);
        viaBroker = await runScript(streams, seconds, warmup, broker);
        const cpuAtEnd = procCpuS(broker.proc.pid);
        brokerCpuTotal = cpuAtStart !== null && cpuAtEnd !== null ? round(cpuAtEnd - cpuAtStart, 3) : null;
      } finally {
        await broker.stop();
      }
      logRun(viaBroker);
      fellShort.broker = !keptUp(viaBroker, streams);
    }
    if (inproc === undefined && viaBroker === undefined) continue;
    const failed = (r: PyRun) => ({ error: r.error, exit: r.exit, stderr: r.stderrTail });
    const captured = Number(viaBroker?.result?.frames_captured ?? 0);
    cases.push({
      streams,
      in_process: inproc === undefined ? null : (inproc.result ?? failed(inproc)),
      broker:
        viaBroker === undefined
          ? null
          : viaBroker.result
            ? {
                ...viaBroker.result,
                broker_cpu_s: viaBroker.brokerCpuS ?? null,
                broker_cpu_s_per_1000_frames: viaBroker.brokerCpuS != null && captured > 0 ? round(viaBroker.brokerCpuS / (captured / 1000), 4) : null,
                broker_cpu_s_whole_run: brokerCpuTotal,
                broker_ffi_version: info?.ffiVersion ?? null,
              }
            : failed(viaBroker),
      python_wall_s: { in_process: inproc?.wallS ?? null, broker: viaBroker?.wallS ?? null },
    });
    await sleep(200);
  }
  return {
    python_audio: {
      python_and_sdk: versions,
      method:
        'bench/python_audio.py, one Python process, public livekit.rtc API only: per stream AudioSource(48000, 1, queue_size_ms) -> ' +
        'LocalAudioTrack.create_audio_track -> AudioStream(track, 48000, 1); captures a ramp in 10 ms frames at real-time pace ' +
        '(one task per stream awaiting capture_frame; a late one catches up, and sending stops at the end of the window, so a path that cannot keep up shows fewer frames and capture_lag_ms) and receives with `async for`; latency = receive time - send time of the capture holding the ' +
        "frame's last non-silent sample (perf_counter_ns). Run once with the SDK's bundled liblivekit_ffi (in_process) and once " +
        'with LIVEKIT_FFI_BROKER set to a fresh broker (broker). cpu_s = getrusage(RUSAGE_SELF) of the Python process over the ' +
        'measured window (in-process it includes liblivekit_ffi\'s threads; through the broker those run in the broker: broker_cpu_s, ' +
        'from /proc/<pid>/stat over the same window).',
      queue_size_ms: QUEUE_MS,
      warmup_s: warmup,
      measure_s: seconds,
      skipped,
      cases,
    },
  };
}

function logRun(r: PyRun): void {
  if (r.result === undefined) {
    log(`  failed: ${r.error}`);
    return;
  }
  const lat = r.result.latency_ms as { p50: number; p99: number };
  log(`  ${r.result.frames_received} received, ${r.result.frames_lost} lost, p50 ${lat.p50} ms, p99 ${lat.p99} ms, cpu ${r.result.cpu_s} s`);
}
