// The broker core against the real liblivekit_ffi, with real broker and worker processes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AudioFrameBufferInfo, AudioStreamType, CaptureAudioFrameRequest, NewAudioSourceRequest, NewAudioStreamRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { BrokerClient } from '../client/broker_client.js';
import { BrokerError } from '../client/broker_error.js';
import { audioBuffer } from '../client/media.js';
import { Error_Code } from '../proto/gen/ffi_broker_pb.js';
import { nativeBuildDir } from '../broker/paths.js';
import { WORKERS, spawnWorker, startBroker, tempDir, waitFor, type BrokerProcess } from './helpers/processes.js';

const AUDIO_WORKER = path.join(WORKERS, 'audio_worker.js');

interface StreamReport {
  id: number;
  frames: number;
  samples: number;
  outOfOrder: number;
  foreign: number;
  captured: number;
}
interface WorkerReport {
  streams: StreamReport[];
  seqViolations: number;
  callbacksBeforeResponse: number;
  callbacks: number;
  foreignEvents: number;
  logsEvents: number;
}
interface Ready {
  pid: number;
  sessionId: string;
  handles: string[];
}

function audioWorker(broker: BrokerProcess, firstId: number, seconds: number) {
  return spawnWorker(AUDIO_WORKER, ['--address', broker.address, '--streams', '2', '--first-id', String(firstId), '--seconds', String(seconds)]);
}

describe('broker core with the real liblivekit_ffi', () => {
  let broker: BrokerProcess;
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    assert.equal(await broker.stop(), 0, 'broker exits 0 on SIGTERM');
    assert.equal(fs.existsSync(broker.socketPath), false, 'socket file removed on exit');
  });

  test('two worker processes, two streams each: every worker gets only its own frames, in order, responses before their callbacks', async () => {
    const workers = [audioWorker(broker, 1, 2), audioWorker(broker, 3, 2)];
    const reports = await Promise.all(workers.map((w) => w.next<WorkerReport>('report', 30000)));
    for (const w of workers) assert.deepEqual(await w.exited, { code: 0, signal: null });
    for (const report of reports) {
      assert.equal(report.streams.length, 2);
      for (const s of report.streams) {
        assert.ok(s.frames >= 150, `stream ${s.id}: ${s.frames} frames in 2 s of 100 frames/s`);
        assert.equal(s.foreign, 0, `stream ${s.id}: samples of another stream`);
        assert.equal(s.outOfOrder, 0, `stream ${s.id}: samples out of order`);
        assert.ok(s.samples >= s.captured * 0.9, `stream ${s.id}: ${s.samples} of ${s.captured} captured samples came back`);
      }
      assert.equal(report.foreignEvents, 0, 'events for streams the worker does not own');
      assert.equal(report.seqViolations, 0, 'event seq strictly increasing');
      assert.ok(report.callbacks >= 300, `capture callbacks received: ${report.callbacks}`);
      assert.equal(report.callbacksBeforeResponse, 0, 'a callback arrived before the response carrying its async_id');
    }
    await waitFor(async () => (await broker.info()).ownedHandles === 0n, 2000, 'all handles released after the workers closed');
  });

  test("the library's log records become broker log records, with target and location, and reach no session whose handles they do not name", async () => {
    const record = broker.logs.find((r) => r.component === 'livekit_ffi' && typeof r.target === 'string' && String(r.msg).includes('initializing ffi server'));
    assert.ok(record, 'a livekit_ffi log record in the broker log');
    assert.equal(record.level, 20, 'LOG_DEBUG maps to pino debug');
    assert.equal(typeof record.file, 'string');
    assert.equal(typeof record.line, 'number');
    const worker = audioWorker(broker, 11, 1);
    const report = await worker.next<WorkerReport>('report');
    assert.equal(report.logsEvents, 0, 'FfiEvent.logs delivered to a session');
    await worker.exited;
  });

  test("a session naming another session's handles gets PERMISSION_DENIED and the owner is unaffected", async () => {
    const victim = audioWorker(broker, 5, 0);
    const ready = await victim.next<Ready>('ready');
    const [source, track, stream] = ready.handles.map(BigInt) as [bigint, bigint, bigint];
    const before = await victim.next<{ frames: number }>('progress');
    const intruder = await BrokerClient.connect(broker.address, { clientName: 'intruder' });
    try {
      const samples = new Int16Array(480);
      const [ptr, bytes] = audioBuffer(samples);
      const capture = new FfiRequest({
        message: { case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: source, buffer: new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }) }) },
      });
      const denied = (err: unknown) => err instanceof BrokerError && err.code === Error_Code.PERMISSION_DENIED;
      await assert.rejects(intruder.request(capture, [[ptr, bytes]]), denied);
      await assert.rejects(
        intruder.request(new FfiRequest({ message: { case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: track, type: AudioStreamType.AUDIO_STREAM_NATIVE }) } })),
        denied,
      );
      await assert.rejects(intruder.dropHandles([stream, source]), denied);
      // Each refusal is a warning in the broker's log, from the intruder's session logger.
      const refusal = broker.logs.find((r) => r.msg === 'request refused' && r.client === 'intruder' && r.request === 'CaptureAudioFrameRequest');
      assert.ok(refusal, 'a "request refused" record naming the request kind');
      assert.equal(refusal.level, 40);
      assert.equal(refusal.code, 'PERMISSION_DENIED');
      assert.equal(typeof refusal.session, 'string');
      assert.equal(refusal.clientPid, process.pid);

      const info = await broker.info();
      const victimInfo = info.sessions.find((s) => s.sessionId === ready.sessionId);
      assert.equal(victimInfo?.ownedHandles, 6n, "the victim's handles are intact");
      const later = await victim.next<{ frames: number }>('progress');
      const after = await victim.next<{ frames: number }>('progress');
      assert.ok(after.frames - later.frames >= 150, `victim kept receiving frames (${later.frames} → ${after.frames} in 1 s)`);
      assert.ok(later.frames > before.frames);
    } finally {
      await intruder.close();
      victim.proc.kill('SIGKILL');
      await victim.exited;
    }
  });

  test('SIGKILL of a worker mid-stream: its handles are gone within 1 s and the other worker keeps receiving', async () => {
    const doomed = audioWorker(broker, 7, 0);
    const survivor = audioWorker(broker, 9, 0);
    const doomedReady = await doomed.next<Ready>('ready');
    await survivor.next('ready');
    await doomed.next('progress');
    const before = await survivor.next<{ frames: number }>('progress');

    doomed.proc.kill('SIGKILL');
    const killedAt = Date.now();
    assert.equal((await doomed.exited).signal, 'SIGKILL');
    await waitFor(
      async () => {
        const info = await broker.info();
        return !info.sessions.some((s) => s.sessionId === doomedReady.sessionId) && info.ownedHandles === 6n;
      },
      1000 - (Date.now() - killedAt),
      "the killed worker's session and handles to be released",
    );

    await survivor.next('progress');
    const after = await survivor.next<{ frames: number }>('progress');
    assert.ok(after.frames - before.frames >= 200, `survivor kept receiving frames (${before.frames} → ${after.frames})`);
    survivor.proc.kill('SIGKILL');
    await survivor.exited;
    await waitFor(async () => (await broker.info()).ownedHandles === 0n, 1000, 'all handles released');
  });
});

const CALLBACK_BOUND_NS = 20_000_000;

describe('native callback queue under load (C stress library with the same ABI)', () => {
  test('8 native threads while the JS loop is blocked for 200 ms: no callback waits for the loop, every event arrives in order', async () => {
    const reportPath = path.join(tempDir(), 'stress.json');
    // Each thread emits 2 events per ms (16,000/s in all): paced like media, because 8 threads
    // that only emit would oversubscribe 2 cores, and the scheduler's time slices would then be
    // measured instead of the callback.
    const broker = await startBroker(['--ffi-lib', path.join(nativeBuildDir, 'libstress_ffi.so'), '--log-level', 'info'], { LKSTRESS_REPORT: reportPath, LKSTRESS_BURST: '2', LKSTRESS_PAUSE_US: '1000' });
    const client = await BrokerClient.connect(broker.address, { clientName: 'stress' });
    try {
      const THREADS = 8;
      const PER_THREAD = 2500;
      const nextSeq = new Array<number>(THREADS).fill(0);
      let received = 0;
      let outOfOrder = 0;
      const all = new Promise<void>((resolve) => {
        client.on('event', ({ event, buffers }) => {
          if (event.message.case !== 'audioStreamEvent' || event.message.value.message.case !== 'frameReceived') return;
          const ptr = event.message.value.message.value.frame!.info!.dataPtr!;
          const bytes = Buffer.from(buffers.get(ptr)!);
          const thread = bytes.readUInt32LE(0);
          const seq = bytes.readUInt32LE(4);
          if (seq !== nextSeq[thread]) outOfOrder++;
          nextSeq[thread] = seq + 1;
          if (++received === THREADS * PER_THREAD) resolve();
        });
      });
      // The stress library reads its parameters from this request: threads, events per thread,
      // and how long the call itself blocks the broker's JS thread.
      const started = Date.now();
      const { response } = await client.request(
        new FfiRequest({ message: { case: 'newAudioSource', value: new NewAudioSourceRequest({ type: 0, numChannels: THREADS, sampleRate: PER_THREAD, queueSizeMs: 200 }) } }),
      );
      assert.ok(Date.now() - started >= 200, 'the request blocked the broker for 200 ms');
      assert.equal(response.message.case, 'newAudioSource');
      await waitFor(() => fs.existsSync(reportPath), 30000, 'the stress report');
      await Promise.race([all, waitFor(() => false, 30000, `all ${THREADS * PER_THREAD} events (got ${received})`)]);
      const report = JSON.parse(fs.readFileSync(reportPath, 'utf8'));
      assert.equal(report.emitted, THREADS * PER_THREAD);
      assert.equal(received, THREADS * PER_THREAD);
      assert.equal(outOfOrder, 0, 'events out of order within a thread');
      // A callback that waited for JavaScript would take up to the whole 200 ms block. The bound is
      // 10× below that, not at the callback's own cost (tens of µs paced, BENCHMARKS.md): on this
      // 2-vCPU VM a library thread is sometimes descheduled mid-call for milliseconds (4.9 ms seen
      // in a CI run with nothing else running), which says nothing about waiting for JS.
      assert.ok(report.callback_ns.max < CALLBACK_BOUND_NS, `longest callback ${report.callback_ns.max} ns, over ${CALLBACK_BOUND_NS} ns`);
    } finally {
      await client.close();
      await broker.stop();
    }
  });

  test('a panic of the library goes to the operator\'s log, and as a Notice only to the session owning the handle it names', async () => {
    const broker = await startBroker(['--ffi-lib', path.join(nativeBuildDir, 'libstress_ffi.so')]);
    const clients = [await BrokerClient.connect(broker.address), await BrokerClient.connect(broker.address)];
    try {
      const notices = clients.map(() => [] as string[]);
      clients.forEach((c, i) => c.on('notice', (n) => n.notice.case === 'ffiPanic' && notices[i]!.push(n.notice.value.message)));
      // A run of 1,600 events (the lowest rate the broker's audio-source guard passes) gives each
      // session a source handle to own.
      const owned = [];
      for (const c of clients) {
        const { response } = await c.request(new FfiRequest({ message: { case: 'newAudioSource', value: new NewAudioSourceRequest({ type: 0, numChannels: 1, sampleRate: 1600, queueSizeMs: 0 }) } }));
        assert.equal(response.message.case, 'newAudioSource');
        owned.push(response.message.value.source!.handle!.id);
      }
      // The stress library panics on sample_rate 57005 (0xDEAD), and answers nothing; queue_size_ms
      // 10·N makes its text name handle N. Session 1 asks for a panic naming session 0's handle, then
      // one naming nothing.
      const panic = (names: bigint) =>
        clients[1]!.request(new FfiRequest({ message: { case: 'newAudioSource', value: new NewAudioSourceRequest({ type: 0, numChannels: 1, sampleRate: 57005, queueSizeMs: Number(names) * 10 }) } }));
      await assert.rejects(panic(owned[0]!), (err) => err instanceof BrokerError && err.code === Error_Code.FFI_ERROR);
      await waitFor(() => notices[0]!.length === 1, 5000, 'the owner\'s FfiPanic notice');
      assert.equal(notices[0]![0], `stress_ffi: simulated panic in a request handler (source_handle=${owned[0]})`);
      await assert.rejects(panic(0n), (err) => err instanceof BrokerError && err.code === Error_Code.FFI_ERROR);
      await waitFor(() => broker.logs.filter((r) => r.level === 60 && String(r.panic).includes('simulated panic')).length === 2, 5000, 'both panics as fatal log records');
      // A round trip after the second panic: anything sent to either session would be there by now.
      for (const c of clients) await c.request(new FfiRequest({ message: { case: 'newAudioSource', value: new NewAudioSourceRequest({ type: 0, numChannels: 1, sampleRate: 1600, queueSizeMs: 0 }) } }));
      assert.deepEqual(notices, [[`stress_ffi: simulated panic in a request handler (source_handle=${owned[0]})`], []], 'only the named handle\'s owner got a notice; a panic naming nothing reached no session');
    } finally {
      for (const c of clients) await c.close();
      await broker.stop();
    }
  });
});
