// Workers killed for real: each cycle starts Node audio workers (and a Python one when the Python
// client's virtualenv is built) that stream audio through the broker, and SIGKILLs them all at a
// random moment, before or after they are set up. Owned handles, sessions, the native queue, the
// broker's open fds and its RSS must come back to their baseline; the drift is reported.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WORKERS, spawnWorker, waitFor, type WorkerProcess } from '../helpers/processes.js';
import { MODE, byMode, report, snapshot, startProbedBroker, type ProbedBroker, type Snapshot } from './probe.js';

const AUDIO_WORKER = path.join(WORKERS, 'audio_worker.js');
const REPO = path.resolve(__dirname, '..', '..', '..');
const PYTHON = path.join(REPO, 'build', 'pyvenv', 'bin', 'python');
const SCENARIOS = path.join(REPO, 'client', 'python', 'tests', 'scenarios');
const CYCLES = Number(process.env.RELIABILITY_KILL_CYCLES ?? byMode(100, 300));
const NODE_WORKERS = 2;
// Python workers take a second or more to start: one every few cycles keeps the CI budget.
const PYTHON_EVERY = byMode(5, 1);
const MAX_KILL_DELAY_MS = 2500;
// Allocator caches and the library's pools may keep some memory; a leak per cycle would pass this.
const RSS_DRIFT_LIMIT_MIB = 150;

const pythonWorker = (address: string, id: number): WorkerProcess =>
  spawnWorker(
    PYTHON,
    ['-c', `import sys, asyncio; sys.path.insert(0, ${JSON.stringify(SCENARIOS)}); import media_worker; from livekit import rtc; print('{"ready": 1}', flush=True); asyncio.run(media_worker.stream_audio("k${id}", ${1000 + id}, 60, rtc))`],
    { LIVEKIT_FFI_BROKER: address },
  );

let broker: ProbedBroker;

before(async () => {
  broker = await startProbedBroker();
});
after(async () => {
  await broker.stop();
});

/** Waits until the broker holds nothing for anyone, then measures. */
async function settled(): Promise<Snapshot> {
  let last: Snapshot | undefined;
  await waitFor(
    async () => {
      last = await snapshot(broker);
      return last.sessions === 0 && last.ownedHandles === 0 && last.nativeQueueDepth === 0;
    },
    15000,
    'every killed worker\'s session and handles released',
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(last)}`);
  });
  return last!;
}

test(`killed workers: ${CYCLES} cycles of SIGKILL at random moments (${MODE} mode)`, async () => {
  const withPython = fs.existsSync(PYTHON);
  let seed = Date.now() % 100000;
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  // One cycle first, so that what the library sets up once (threads, pools) is in the baseline.
  const cycle = async (i: number): Promise<{ killedAfterReady: number; killed: number }> => {
    const workers = Array.from({ length: NODE_WORKERS }, (_, w) => spawnWorker(AUDIO_WORKER, ['--address', broker.address, '--streams', '2', '--first-id', String(w * 2 + 1), '--seconds', '0']));
    if (withPython && i % PYTHON_EVERY === 0) workers.push(pythonWorker(broker.address, i));
    const readyCount = { n: 0 };
    for (const w of workers) w.next('ready', 60000).then(() => readyCount.n++, () => {});
    await new Promise((r) => setTimeout(r, random() * MAX_KILL_DELAY_MS));
    const killedAfterReady = readyCount.n;
    for (const w of workers) w.proc.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    return { killedAfterReady, killed: workers.length };
  };
  await cycle(0);
  const baseline = await settled();
  const started = Date.now();
  let killed = 0;
  let killedAfterReady = 0;
  const samples: Snapshot[] = [];
  for (let i = 1; i <= CYCLES; i++) {
    const c = await cycle(i);
    killed += c.killed;
    killedAfterReady += c.killedAfterReady;
    if (i % 25 === 0) samples.push(await settled());
    assert.equal(broker.proc.exitCode, null, 'the broker is alive');
  }
  const final = await settled();
  const drift = {
    ownedHandles: final.ownedHandles - baseline.ownedHandles,
    sessions: final.sessions - baseline.sessions,
    nativeQueueDepth: final.nativeQueueDepth - baseline.nativeQueueDepth,
    fds: final.fds - baseline.fds,
    rssMiB: Math.round((final.rssMiB - baseline.rssMiB) * 10) / 10,
  };
  report('killed_workers', {
    cycles: CYCLES,
    workersKilled: killed,
    killedAfterSetUp: killedAfterReady,
    pythonWorkers: withPython ? `1 every ${PYTHON_EVERY} cycles` : 'skipped (no build/pyvenv; scripts/python-venvs.sh makes it)',
    seconds: Math.round((Date.now() - started) / 1000),
    baseline,
    final,
    drift,
    rssEvery25Cycles: samples.map((s) => s.rssMiB),
  });
  assert.ok(killedAfterReady > 0 && killedAfterReady < killed, `some workers were killed mid-stream and some during set-up (${killedAfterReady} of ${killed})`);
  assert.equal(drift.ownedHandles, 0);
  assert.equal(drift.sessions, 0);
  assert.equal(drift.nativeQueueDepth, 0);
  assert.ok(drift.fds <= 2, `open fds drifted by ${drift.fds}`);
  assert.ok(drift.rssMiB < RSS_DRIFT_LIMIT_MIB, `RSS drifted by ${drift.rssMiB} MiB`);
});
