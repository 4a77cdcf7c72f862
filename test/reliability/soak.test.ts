// Soak: 30 sessions (50 in long mode), each with an audio source → track → stream, capturing 10 ms frames at real
// time for 2 minutes (10 in long mode). Every sample names its stream and position, so a frame
// lost without an EventsDropped notice is seen; the broker's event latency p99 (its histogram of
// native callback → written to the session) is taken per interval, and its RSS.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import path from 'node:path';
import { spawnWorker, WORKERS, type WorkerProcess } from '../helpers/processes.js';
import { MODE, byMode, histogram, quantileBetween, report, rssMiB, startProbedBroker, type ProbedBroker } from './probe.js';

// Quick mode runs in CI on 2 cores: there 50 sessions starved the library's own audio threads, which
// then lost frames before the broker saw them (51-86 frames per run on 2026-11-30, main's code as
// well as this one; none with 30), and the test could no longer tell the broker's losses apart.
const SESSIONS = Number(process.env.RELIABILITY_SOAK_SESSIONS ?? byMode(30, 50));
const SECONDS = Number(process.env.RELIABILITY_SOAK_SECONDS ?? byMode(120, 600));
const INTERVAL_S = byMode(15, 60);
// p99 may move with the machine's other load; a trend beyond this factor is a regression.
const P99_FACTOR = 10;
const P99_FLOOR_S = 0.05;
const RSS_SECOND_HALF_MIB = 64;
const RSS_FILL_S = 45;

// 50 ms frames (20 per second each way per session): the soak is about time (leaks, latency drift),
// not throughput, which bench/ measures: at 10 ms, 50 streams are more than this 2-core machine's
// broker and clients keep up with (BENCHMARKS.md, audio fan-in).
const FRAME_MS = 50;
// audio_worker's samples are id * 1000 + phase in int16, so ids are 1..31: workers beyond the third
// reuse the first ones' (ids only need to differ within a worker, whose sessions are checked apart).
const SIGNAL_IDS = 30;
const FRAME = 48 * FRAME_MS;
const SESSIONS_PER_WORKER = 10;
// The last frames of each stream may still be in the source's queue when its worker stops.
const TAIL_FRAMES_PER_STREAM = 5;

interface WorkerReport {
  streams: { frames: number; samples: number; silent: number; outOfOrder: number; foreign: number; captured: number }[];
  seqViolations: number;
  foreignEvents: number;
  eventsDropped: number;
}

let broker: ProbedBroker;
before(async () => {
  broker = await startProbedBroker();
});
after(async () => {
  await broker.stop();
});

// The sessions live in a few worker processes (test/workers/audio_worker.ts --sessions: each
// session its own BrokerClient with a source → track → stream, a signal whose every sample names its
// stream and position). Fifty Node processes of their own would take this 2-core machine's CPU
// away from the broker they are meant to load.
test(`soak: ${SESSIONS} sessions with audio streams for ${SECONDS} s (${MODE} mode)`, async () => {
  const workers: WorkerProcess[] = [];
  try {
    for (let first = 0; first < SESSIONS; first += SESSIONS_PER_WORKER) {
      const sessions = Math.min(SESSIONS_PER_WORKER, SESSIONS - first);
      workers.push(
        spawnWorker(path.join(WORKERS, 'audio_worker.js'), [
          '--address', broker.address,
          '--sessions', String(sessions),
          '--streams', '1',
          '--first-id', String((first % SIGNAL_IDS) + 1),
          '--seconds', String(SECONDS),
          '--frame-ms', String(FRAME_MS),
          '--start-on-signal', '1',
        ]),
      );
    }
    await Promise.all(workers.map((w) => w.next('ready', 60_000)));
    for (const w of workers) w.proc.kill('SIGUSR2');
    const pid = broker.proc.pid!;
    const rssStart = rssMiB(pid);
    const intervals: { at: number; p99ms: number; rssMiB: number }[] = [];
    let lastHist = await histogram(broker.metricsUrl, 'lkb_event_latency_seconds');
    const started = Date.now();
    const reports = Promise.all(workers.map((w) => w.next<WorkerReport>('report', (SECONDS + 60) * 1000)));
    let done = false;
    void reports.finally(() => (done = true));
    while (!done && Date.now() - started < (SECONDS + 60) * 1000) {
      await Promise.race([reports, new Promise((r) => setTimeout(r, INTERVAL_S * 1000))]);
      if (done) break;
      const hist = await histogram(broker.metricsUrl, 'lkb_event_latency_seconds');
      intervals.push({ at: Math.round((Date.now() - started) / 1000), p99ms: quantileBetween(lastHist, hist, 0.99) * 1000, rssMiB: rssMiB(pid) });
      lastHist = hist;
    }
    const all = await reports;
    const streams = all.flatMap((r) => r.streams);
    const capturedFrames = streams.reduce((a, s) => a + s.captured / FRAME, 0);
    const receivedFrames = streams.reduce((a, s) => a + s.samples / FRAME, 0);
    const dropped = all.reduce((a, r) => a + r.eventsDropped, 0);
    const lost = Math.max(0, Math.round(capturedFrames - receivedFrames));
    const p99s = intervals.map((i) => i.p99ms).filter((v) => Number.isFinite(v));
    report('soak', {
      sessions: SESSIONS,
      seconds: SECONDS,
      framesCaptured: Math.round(capturedFrames),
      framesReceived: Math.round(receivedFrames),
      framesLost: lost,
      eventsDroppedReported: dropped,
      silentSamplesInserted: streams.reduce((a, s) => a + s.silent, 0),
      rssMiB: { start: rssStart, end: rssMiB(pid) },
      intervals,
    });
    assert.deepEqual(
      all.map((r) => [r.seqViolations, r.foreignEvents]).filter(([a, b]) => a! + b! > 0),
      [],
      'every session got its own events, in seq order',
    );
    assert.equal(streams.reduce((a, s) => a + s.outOfOrder + s.foreign, 0), 0, 'samples in order, none of another stream');
    assert.ok(lost <= dropped + SESSIONS * TAIL_FRAMES_PER_STREAM, `${lost} frames lost, ${dropped} reported dropped`);
    assert.ok(p99s.length >= 2, 'p99 measured over several intervals');
    const first = Math.max(p99s[0]!, P99_FLOOR_S * 1000);
    assert.ok(p99s.every((p) => p <= first * P99_FACTOR), `event latency p99 per interval stays within ${P99_FACTOR}x of the first: ${p99s.join(', ')} ms`);
    // Buffers (each session's 2 MiB kept for a resume) fill in the first ~30 s, then RSS is flat:
    // growth after that, and in the second half, is a leak. Runs too short to tell only report it.
    const settled = intervals.find((i) => i.at >= Math.max(SECONDS / 2, RSS_FILL_S));
    const rssEnd = rssMiB(pid);
    if (settled !== undefined) {
      assert.ok(rssEnd - settled.rssMiB < RSS_SECOND_HALF_MIB, `RSS ${settled.rssMiB} MiB at ${settled.at} s, ${rssEnd.toFixed(1)} MiB at the end`);
    }
    assert.equal(broker.proc.exitCode, null);
  } finally {
    for (const w of workers) w.proc.kill('SIGKILL');
  }
});
