// The shared-memory media lane against the real broker and liblivekit_ffi: frames cross in the
// lane both ways for a worker on the Unix socket, inline over TCP, and whatever a worker does to
// its regions (a reference to another session's region or out of bounds, truncating, growing or
// scribbling over them, closing them) is a clear error or a fallback for that worker alone: the
// broker and a bystander streaming beside it never notice.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import {
  AudioFrameBufferInfo,
  AudioSourceType,
  AudioStreamType,
  CaptureAudioFrameRequest,
  NewAudioSourceRequest,
  NewAudioStreamRequest,
} from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiEvent, FfiResponse, type FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { CreateAudioTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { ClientLane } from '../client/media_lane.js';
import { BufferSchema, Error_Code, LaneRefSchema, LaneRequestSchema, RequestSchema, type Buffer as WireBuffer, type Response, type Welcome } from '../proto/gen/ffi_broker_pb.js';
import { ffi } from './helpers/assertions.js';
import { rawSession } from './helpers/raw_session.js';
import { WORKERS, spawnWorker, startBroker, waitFor, watchProgress, type BrokerProcess, type Progress, type WorkerProcess } from './helpers/processes.js';

const AUDIO_WORKER = path.join(WORKERS, 'audio_worker.js');
const FRAME = 480;
const FRAME_PTR = 0x5000n;

interface Report {
  streams: { id: number; frames: number; samples: number; captured: number; outOfOrder: number; foreign: number }[];
  lanePlaced: number;
  laneRead: number;
}

function assertHealthy(report: Report): void {
  for (const s of report.streams) {
    assert.ok(s.frames >= 150, `stream ${s.id}: ${s.frames} frames in 2 s`);
    assert.equal(s.outOfOrder, 0, `stream ${s.id}: samples out of order`);
    assert.equal(s.foreign, 0, `stream ${s.id}: samples of another stream`);
    assert.ok(s.samples >= s.captured * 0.9, `stream ${s.id}: ${s.samples} of ${s.captured} samples came back`);
  }
}

/** A raw Session with a lane, and one audio source → track → stream set made through it. */
async function laneSession(broker: BrokerProcess, clientName: string, askLane = true) {
  const raw = rawSession(broker.address);
  raw.hello(clientName, { lane: askLane ? create(LaneRequestSchema, {}) : undefined });
  const welcome: Welcome = await raw.welcome();
  let nextId = 1n;
  const ask = async (message: FfiRequest['message'], buffers: WireBuffer[] = []): Promise<Response> => {
    const requestId = nextId++;
    raw.send({ case: 'request', value: create(RequestSchema, { requestId, ffiRequest: ffi(message).toBinary(), buffers }) });
    let found: Response | undefined;
    await waitFor(() => {
      for (const m of raw.received) if (m.message.case === 'response' && m.message.value.requestId === requestId) found = m.message.value;
      return found !== undefined;
    }, 5000, `response ${requestId}`);
    return found!;
  };
  const handle = (r: Response) => {
    assert.equal(r.error, undefined, r.error?.message);
    const m = FfiResponse.fromBinary(r.ffiResponse).message;
    const owned = (m.value as { source?: { handle?: { id?: bigint } }; track?: { handle?: { id?: bigint } }; stream?: { handle?: { id?: bigint } } }) ?? {};
    return (owned.source ?? owned.track ?? owned.stream)!.handle!.id!;
  };
  const source = handle(await ask({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) }));
  const track = handle(await ask({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 'lane', sourceHandle: source }) }));
  handle(await ask({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: track, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: 48000, numChannels: 1 }) }));
  const capture = (buffer: WireBuffer) =>
    ask({ case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: source, buffer: new AudioFrameBufferInfo({ dataPtr: FRAME_PTR, numChannels: 1, sampleRate: 48000, samplesPerChannel: FRAME }) }) }, [buffer]);
  /** The Buffers of the frame events received so far. */
  const frameBuffers = () =>
    raw.received.flatMap((m) => (m.message.case === 'events' ? m.message.value.events : [])).filter((e) => FfiEvent.fromBinary(e.ffiEvent).message.case === 'audioStreamEvent').flatMap((e) => e.buffers);
  return { raw, welcome, capture, frameBuffers };
}

const samplesOf = (from: number) => {
  const s = new Int16Array(FRAME);
  for (let i = 0; i < FRAME; i++) s[i] = from + i;
  return new Uint8Array(s.buffer);
};

describe('the shared-memory media lane', () => {
  let broker: BrokerProcess;
  let bystander: WorkerProcess;
  let progress: Progress[];
  before(async () => {
    broker = await startBroker();
    bystander = spawnWorker(AUDIO_WORKER, ['--address', broker.address, '--streams', '2', '--first-id', '1', '--seconds', '0']);
    progress = watchProgress(bystander);
    const ready = await bystander.next<{ mediaLane: string }>('ready');
    assert.equal(ready.mediaLane, 'open', 'the bystander streams through its lane');
  });
  after(async () => {
    bystander?.proc.kill('SIGKILL');
    await bystander?.exited;
    assert.equal(await broker.stop(), 0, 'broker exits 0 on SIGTERM');
  });

  /** The bystander's frames keep coming at real-time pace (two streams: 200 frames/s). */
  async function bystanderStreams(): Promise<void> {
    const from = progress.length;
    await waitFor(() => progress.length >= from + 2, 10000, 'two more progress lines of the bystander');
    const [a, b] = progress.slice(-2) as [Progress, Progress];
    assert.ok(b.frames - a.frames >= 150, `the bystander received ${b.frames - a.frames} frames in its last second`);
  }

  test('a worker on the Unix socket: its captures and its frames cross in the lane, in order', async () => {
    const worker = spawnWorker(AUDIO_WORKER, ['--address', broker.address, '--streams', '2', '--first-id', '10', '--seconds', '2']);
    const ready = await worker.next<{ mediaLane: string }>('ready');
    assert.equal(ready.mediaLane, 'open');
    const report = await worker.next<Report>('report', 30000);
    assertHealthy(report);
    const frames = report.streams.reduce((a, s) => a + s.frames, 0);
    const captured = report.streams.reduce((a, s) => a + s.captured, 0) / FRAME;
    assert.ok(report.lanePlaced >= captured * 0.99, `${report.lanePlaced} of ${captured} captures placed in the lane`);
    assert.ok(report.laneRead >= frames * 0.99, `${report.laneRead} of ${frames} frames read from the lane`);
    assert.deepEqual(await worker.exited, { code: 0, signal: null });
  });

  test('over TCP the worker asks for no lane and its media travel inline', async () => {
    const tcp = await startBroker([], {}, '127.0.0.1:0');
    try {
      const worker = spawnWorker(AUDIO_WORKER, ['--address', tcp.address, '--streams', '2', '--first-id', '20', '--seconds', '2']);
      assert.equal((await worker.next<{ mediaLane: string }>('ready')).mediaLane, 'not asked for');
      const report = await worker.next<Report>('report', 30000);
      assertHealthy(report);
      assert.equal(report.lanePlaced + report.laneRead, 0, 'nothing crossed in a lane');
      assert.deepEqual(await worker.exited, { code: 0, signal: null });
    } finally {
      await tcp.stop();
    }
  });

  test('a raw session: its samples reach the library through to_broker and come back through to_client', async () => {
    const s = await laneSession(broker, 'lane-raw');
    const lane = new ClientLane(s.welcome.lane!);
    // Frames of the stream before the lane was mapped came inline; from a moment later on, in the lane.
    await new Promise((r) => setTimeout(r, 50));
    const mapped = s.frameBuffers().length;
    try {
      for (let n = 0; n < 20; n++) {
        const placed = lane.place(samplesOf(1 + n * FRAME))!;
        assert.ok(placed !== undefined, 'room in to_broker');
        const r = await s.capture(create(BufferSchema, { ptr: FRAME_PTR, lane: placed.ref }));
        lane.free(placed.slot);
        assert.equal(r.error, undefined, r.error?.message);
      }
      await waitFor(() => s.frameBuffers().length >= 30, 5000, 'frames back');
      const received: number[] = [];
      for (const [i, b] of s.frameBuffers().entries()) {
        if (i >= mapped) assert.ok(b.lane !== undefined && b.data.length === 0, 'a frame of a session with a mapped lane comes in the lane');
        const bytes = b.lane === undefined ? b.data : lane.read(b.lane);
        if (b.lane !== undefined) lane.release(b.lane.release);
        for (const v of new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2)) if (v !== 0) received.push(v);
      }
      assert.deepEqual(received, Array.from({ length: 20 * FRAME }, (_, i) => 1 + i), 'every captured sample came back, in order');
    } finally {
      lane.close();
      s.raw.close();
    }
  });

  test('references the session may not use are refused with a clear error, and cost nothing else', async () => {
    const a = await laneSession(broker, 'lane-a');
    const b = await laneSession(broker, 'lane-b');
    const none = await laneSession(broker, 'lane-none', false);
    const toBroker = a.welcome.lane!.toBroker!;
    const ref = (region: number, offset: bigint, length: bigint) => create(BufferSchema, { ptr: FRAME_PTR, lane: create(LaneRefSchema, { region, offset, length }) });
    const cases: [string, Promise<Response>, Error_Code, RegExp][] = [
      ["another session's to_broker region", a.capture(ref(b.welcome.lane!.toBroker!.id, 0n, 960n)), Error_Code.PERMISSION_DENIED, /not this session's to_broker region/],
      ['its own to_client region', a.capture(ref(a.welcome.lane!.toClient!.id, 64n, 960n)), Error_Code.PERMISSION_DENIED, /not this session's to_broker region/],
      ['past the end', a.capture(ref(toBroker.id, toBroker.size - 100n, 960n)), Error_Code.INVALID_REQUEST, /past the end/],
      ['an offset that wraps around', a.capture(ref(toBroker.id, 2n ** 64n - 1n, 960n)), Error_Code.INVALID_REQUEST, /past the end/],
      ['a length that wraps around', a.capture(ref(toBroker.id, 64n, 2n ** 64n - 1n)), Error_Code.INVALID_REQUEST, /implies|past the end|has \d+ bytes/],
      ['too short for the frame', a.capture(ref(toBroker.id, 0n, 100n)), Error_Code.INVALID_REQUEST, /has 100 bytes, the message implies 960/],
      ['both inline data and a reference', a.capture(create(BufferSchema, { ptr: FRAME_PTR, data: new Uint8Array(960), lane: create(LaneRefSchema, { region: toBroker.id, offset: 0n, length: 960n }) })), Error_Code.INVALID_REQUEST, /both inline data and a lane reference/],
      ['a session without a lane', none.capture(ref(toBroker.id, 0n, 960n)), Error_Code.INVALID_REQUEST, /this session has none/],
    ];
    for (const [what, answer, code, pattern] of cases) {
      const r = await answer;
      assert.equal(r.error?.code, code, `${what}: ${r.error?.message ?? 'answered without error'}`);
      assert.match(r.error!.message, pattern, what);
    }
    // Still served: an inline capture goes through.
    assert.equal((await a.capture(create(BufferSchema, { ptr: FRAME_PTR, data: samplesOf(1) }))).error, undefined);
    for (const s of [a, b, none]) s.raw.close();
    await bystanderStreams();
  });

  test('a region cannot be truncated or grown; scribbling over both and closing them harms only the scribbler', async () => {
    const s = await laneSession(broker, 'lane-hostile');
    const { toBroker, toClient } = s.welcome.lane!;
    const fds = [fs.openSync(toBroker!.path, 'r+'), fs.openSync(toClient!.path, 'r+')];
    try {
      for (const fd of fds) {
        assert.throws(() => fs.ftruncateSync(fd, 0), { code: 'EPERM' }, 'shrinking a sealed region is refused by the kernel');
        assert.throws(() => fs.ftruncateSync(fd, 1 << 30), { code: 'EPERM' }, 'growing it too');
      }
      // Say it is mapped, then write garbage everywhere, the cursor included, while frames flow.
      const one = Buffer.alloc(8);
      one.writeBigUInt64LE(1n);
      fs.writeSync(fds[1]!, one, 0, 8, 8);
      for (let n = 0; n < 100; n++) {
        for (const [fd, size] of [[fds[0]!, Number(toBroker!.size)], [fds[1]!, Number(toClient!.size)]] as const) {
          fs.writeSync(fd, randomBytes(64 * 1024), 0, 64 * 1024, Math.floor(Math.random() * (size - 64 * 1024)));
          fs.writeSync(fd, randomBytes(16), 0, 16, 0);
        }
        const r = await s.capture(create(BufferSchema, { ptr: FRAME_PTR, lane: create(LaneRefSchema, { region: toBroker!.id, offset: BigInt(n * 960), length: 960n }) }));
        assert.equal(r.error, undefined, `a capture of scribbled samples is still a capture: ${r.error?.message}`);
      }
      await waitFor(() => s.frameBuffers().length >= 50, 5000, 'frames keep coming to the scribbler');
      for (const b of s.frameBuffers()) assert.ok(b.lane === undefined || (b.lane.offset >= 64n && b.lane.offset + b.lane.length <= toClient!.size), 'every reference the broker sends lies inside the region');
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
    // Its regions closed on its side: the broker goes on writing into its own mapping.
    const before = s.frameBuffers().length;
    await waitFor(() => s.frameBuffers().length >= before + 50, 5000, 'frames after the worker closed its regions');
    s.raw.close();
    await bystanderStreams();
    const info = await broker.info();
    assert.ok(info.sessions.some((x) => x.clientName === 'audio-worker' && x.connected), 'the bystander is still there');
  });
});
