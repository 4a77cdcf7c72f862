// Bad input from a worker against the real broker and liblivekit_ffi: each one must get a clear
// error (a contract Error in the Response, or a gRPC status on the Session stream) and cost only
// that request, or for protocol violations that session. A healthy bystander worker streams audio
// through the same broker the whole time, and must not notice.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import {
  ApmProcessStreamRequest, NewApmRequest, NewApmResponse,
  AudioFrameBufferInfo,
  AudioSourceType,
  AudioStreamType,
  CaptureAudioFrameRequest,
  NewAudioSourceRequest,
  NewAudioStreamRequest,
} from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { DisposeRequest, FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { PublishDataRequest } from '@livekit/rtc-ffi-bindings/proto/room_pb.js';
import { CreateAudioTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { BrokerClient } from '../client/broker_client.js';
import { BrokerError } from '../client/broker_error.js';
import { audioBuffer, dataBuffer } from '../client/media.js';
import { Error_Code, RequestSchema } from '../proto/gen/ffi_broker_pb.js';
import { rawSession } from './helpers/raw_session.js';
import { WORKERS, spawnWorker, startBroker, waitFor, watchProgress, type BrokerProcess, type Progress, type WorkerProcess } from './helpers/processes.js';
import { expectRefusal, ffi } from './helpers/assertions.js';

const AUDIO_WORKER = path.join(WORKERS, 'audio_worker.js');
const DEFAULT_LIMIT = 64 * 1024 * 1024; // the broker's default --max-message-size
const UNKNOWN_HANDLE = 999999n;
// Two streams of 10 ms frames: 200 frames/s when healthy.
const MIN_FRAMES_PER_SECOND = 150;

function newSourceRequest(): FfiRequest {
  return ffi({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) });
}

async function newSource(client: BrokerClient): Promise<bigint> {
  const { response } = await client.request(newSourceRequest());
  assert.equal(response.message.case, 'newAudioSource');
  return response.message.value.source!.handle!.id!;
}

function captureRequest(source: bigint, info: { dataPtr: bigint; samplesPerChannel: number; numChannels?: number }): FfiRequest {
  const buffer = new AudioFrameBufferInfo({ sampleRate: 48000, numChannels: 1, ...info });
  return ffi({ case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: source, buffer }) });
}

/** The session still works: a valid request gets its answer (its handle is dropped again). */
async function assertServes(client: BrokerClient): Promise<void> {
  assert.ok(client.isOpen, `the session is still open (${client.closeReason?.message ?? ''})`);
  await client.dropHandles([await newSource(client)]);
}

async function ownedBySession(broker: BrokerProcess, sessionId: string): Promise<bigint | undefined> {
  return (await broker.info()).sessions.find((s) => s.sessionId === sessionId)?.ownedHandles;
}

describe('bad input: a clear error for the sender, nothing for anyone else', () => {
  let broker: BrokerProcess;
  let bystander: WorkerProcess;
  let bystanderHandles: bigint[];
  let bystanderSession: string;
  let progress: Progress[];
  let baseline: Progress;
  let client: BrokerClient;

  before(async () => {
    broker = await startBroker();
    bystander = spawnWorker(AUDIO_WORKER, ['--address', broker.address, '--streams', '2', '--first-id', '1', '--seconds', '0']);
    progress = watchProgress(bystander);
    const ready = await bystander.next<{ sessionId: string; handles: string[] }>('ready');
    bystanderSession = ready.sessionId;
    bystanderHandles = ready.handles.map(BigInt);
    // Past the first second, when the streams are up to speed.
    await waitFor(() => progress.length >= 2, 10000, 'two progress lines of the bystander');
    baseline = progress[progress.length - 1]!;
    client = await BrokerClient.connect(broker.address, { clientName: 'bad-input' });
  });

  after(async () => {
    await client?.close();
    bystander?.proc.kill('SIGKILL');
    await bystander?.exited;
    if (broker !== undefined) assert.equal(await broker.stop(), 0, 'broker exits 0 on SIGTERM');
  });

  test('1. ffi_request bytes that do not decode: INVALID_REQUEST', async () => {
    const valid = newSourceRequest().toBinary();
    let random: Uint8Array;
    // Random bytes almost never decode; make sure these do not, so the case is deterministic.
    for (;;) {
      random = randomBytes(64);
      try {
        FfiRequest.fromBinary(random);
      } catch {
        break;
      }
    }
    const garbage: [string, Uint8Array][] = [
      ['random bytes', random],
      ['a tag with wire type 7', Uint8Array.of(0x0f, 1, 2, 3)],
      ['a varint longer than 10 bytes', new Uint8Array(11).fill(0xff)],
      ['a valid request cut short', valid.subarray(0, valid.length - 3)],
    ];
    for (const [what, bytes] of garbage) {
      await expectRefusal(client.request(bytes), Error_Code.INVALID_REQUEST, /does not decode as livekit\.proto\.FfiRequest/).catch((err: Error) => {
        throw new Error(`${what}: ${err.message}`);
      });
    }
    await assertServes(client);
  });

  test('2. an FfiRequest with no request in its oneof: INVALID_REQUEST', async () => {
    await expectRefusal(client.request(new Uint8Array(0)), Error_Code.INVALID_REQUEST, /has no request set/);
    // Only an unknown field (999, varint 1): decodes, but still names no request.
    await expectRefusal(client.request(Uint8Array.of(0xb8, 0x3e, 0x01)), Error_Code.INVALID_REQUEST, /has no request set/);
    await assertServes(client);
  });

  test('3. protocol violations end that session with a gRPC status, and free what it owned', async () => {
    const request = create(RequestSchema, { requestId: 1n, ffiRequest: newSourceRequest().toBinary() });

    const early = rawSession(broker.address);
    try {
      early.send({ case: 'request', value: request });
      const status = await early.status();
      assert.equal(status.code, grpc.status.FAILED_PRECONDITION, status.details);
      assert.match(status.details, /must be hello/);
      assert.equal(early.received.length, 0, 'nothing answered, the request was not executed');
    } finally {
      early.close();
    }

    const twice = rawSession(broker.address);
    try {
      twice.hello();
      const welcome = await twice.welcome();
      twice.send({ case: 'request', value: request }); // a handle, to see it released
      await waitFor(async () => (await ownedBySession(broker, welcome.sessionId)) === 1n, 5000, 'the raw session to own its source');
      twice.hello();
      const status = await twice.status();
      assert.equal(status.code, grpc.status.FAILED_PRECONDITION, status.details);
      assert.match(status.details, /hello was already sent/);
      await waitFor(async () => (await ownedBySession(broker, welcome.sessionId)) === undefined, 2000, 'the failed session to be gone');
    } finally {
      twice.close();
    }

    const empty = rawSession(broker.address);
    try {
      empty.hello();
      await empty.welcome();
      empty.send({ case: undefined });
      const status = await empty.status();
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT, status.details);
      assert.match(status.details, /no message set/);
    } finally {
      empty.close();
    }

    const info = await broker.info();
    assert.deepEqual(info.sessions.map((s) => s.sessionId).sort(), [bystanderSession, client.sessionId].sort(), 'only the well-behaved sessions remain');
    assert.equal(info.ownedHandles, BigInt(bystanderHandles.length), "only the bystander's handles remain");
    await assertServes(client);
  });

  // Messages a client sent before it learnt that its stream failed must not start a second session
  // on that stream, nor overwrite the status it ended with.
  test(
    '3b. messages already in flight after a protocol violation are ignored: the first status stands, no second session',
    async () => {
      const raw = rawSession(broker.address);
      try {
        raw.hello('3b-first');
        raw.send({ case: undefined });
        raw.hello('3b-second');
        const problems: string[] = [];
        const status = await raw.status(3000).catch((err: Error) => {
          problems.push(err.message);
          return undefined;
        });
        if (status !== undefined && status.code !== grpc.status.INVALID_ARGUMENT) problems.push(`status ${status.code} ${status.details}, not INVALID_ARGUMENT`);
        await new Promise((resolve) => setTimeout(resolve, 200)); // the broker's log lines travel by pipe
        if (broker.logs.some((r) => r.msg === 'session started' && r.client === '3b-second')) problems.push('a second session was started on the failed stream');
        assert.deepEqual(problems, []);
      } finally {
        raw.close();
      }
    },
  );

  test('4. handles the session does not own: PERMISSION_DENIED', async () => {
    await expectRefusal(
      client.request(ffi({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 'x', sourceHandle: UNKNOWN_HANDLE }) })),
      Error_Code.PERMISSION_DENIED,
      /CreateAudioTrackRequest\.source_handle = 999999 names a handle this session does not own/,
    );

    // Unknown handles, one of the bystander's, and one of our own: only our own is dropped.
    const own = await newSource(client);
    assert.equal(await ownedBySession(broker, client.sessionId), 1n);
    const err = await expectRefusal(client.dropHandles([UNKNOWN_HANDLE, 123456789n, bystanderHandles[0]!, own]), Error_Code.PERMISSION_DENIED, /not owned by this session/);
    assert.match(err.detail, new RegExp(`handles 999999, 123456789, ${bystanderHandles[0]} are not owned`));
    assert.equal(await ownedBySession(broker, client.sessionId), 0n, 'the owned handle in the same call was dropped');
    assert.equal(await ownedBySession(broker, bystanderSession), BigInt(bystanderHandles.length), "the bystander's handles are intact");
    await assertServes(client);
  });

  test('5. audio buffers that are short, missing or impossibly large: INVALID_REQUEST with the sizes', async () => {
    const source = await newSource(client);
    try {
      // 480 mono samples need 960 bytes; send 100.
      const [ptr] = audioBuffer(new Int16Array(480));
      await expectRefusal(
        client.request(captureRequest(source, { dataPtr: ptr, samplesPerChannel: 480 }), [[ptr, new Uint8Array(100)]]),
        Error_Code.INVALID_REQUEST,
        /AudioFrameBufferInfo: the Buffer for data_ptr = .* has 100 bytes, the message implies 960/,
      );

      // A data_ptr with no Buffer of that ptr (a Buffer under another ptr does not count).
      const [other, otherBytes] = audioBuffer(new Int16Array(480));
      await expectRefusal(
        client.request(captureRequest(source, { dataPtr: ptr, samplesPerChannel: 480 }), [[other, otherBytes]]),
        Error_Code.INVALID_REQUEST,
        new RegExp(`AudioFrameBufferInfo: data_ptr = ${ptr} \\(0x${ptr.toString(16)}\\) has no Buffer with that ptr`),
      );

      // 4e9 samples × 8 channels × 2 bytes: refused from the sizes alone, before any buffer is looked at.
      await expectRefusal(
        client.request(captureRequest(source, { dataPtr: ptr, samplesPerChannel: 4_000_000_000, numChannels: 8 })),
        Error_Code.INVALID_REQUEST,
        new RegExp(`AudioFrameBufferInfo: data_ptr implies 64000000000 bytes, over the ${DEFAULT_LIMIT}-byte message limit`),
      );

      // The source itself is fine: a proper frame is taken.
      const [good, goodBytes] = audioBuffer(new Int16Array(480).fill(1));
      const { response } = await client.request(captureRequest(source, { dataPtr: good, samplesPerChannel: 480 }), [[good, goodBytes]]);
      assert.equal(response.message.case, 'captureAudioFrame');
    } finally {
      await client.dropHandles([source]);
    }
  });

  test('6. pointer memory sent short: INVALID_REQUEST naming the field; an unowned handle is refused first; DisposeRequest: PERMISSION_DENIED', async () => {
    const [ptr, bytes] = dataBuffer(new TextEncoder().encode('hello'));
    await expectRefusal(
      client.request(
        ffi({ case: 'publishData', value: new PublishDataRequest({ localParticipantHandle: UNKNOWN_HANDLE, dataPtr: ptr, dataLen: BigInt(bytes.length), reliable: true }) }),
        [[ptr, bytes]],
      ),
      Error_Code.PERMISSION_DENIED,
      /PublishDataRequest\.local_participant_handle = \d+ names a handle this session does not own/,
    );
    const created = await client.request(ffi({ case: 'newApm', value: new NewApmRequest({ echoCancellerEnabled: true, gainControllerEnabled: false, highPassFilterEnabled: false, noiseSuppressionEnabled: false }) }));
    assert.equal(created.response.message.case, 'newApm');
    const apm = (created.response.message.value as NewApmResponse).apm!.handle!.id!;
    try {
      await expectRefusal(
        client.request(ffi({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: apm, dataPtr: ptr, size: 960, sampleRate: 48000, numChannels: 1 }) }), [[ptr, bytes]]),
        Error_Code.INVALID_REQUEST,
        /ApmProcessStreamRequest: the Buffer for data_ptr = .* has 5 bytes, the message implies 960/,
      );
    } finally {
      await client.dropHandles([apm]);
    }
    // Would tear the library down under every session.
    await expectRefusal(client.request(ffi({ case: 'dispose', value: new DisposeRequest({ async: false }) })), Error_Code.PERMISSION_DENIED, /DisposeRequest would tear down/);
    await assertServes(client);
  });

  test('7. a request missing a proto2 required field: INVALID_REQUEST, not a crash', async () => {
    // The v1 classes refuse to encode these, so the bytes are written by hand; the numbers are
    // checked against the pinned schema so a schema change cannot silently change the case.
    assert.equal(FfiRequest.fields.find(16)?.name, 'create_audio_track');
    assert.equal(CreateAudioTrackRequest.fields.find(1)?.name, 'name');
    assert.equal(FfiRequest.fields.find(26)?.name, 'new_audio_source');
    // FfiRequest.create_audio_track (16, length-delimited: tag 0x82 0x01) = { name (1) = "x" }, no source_handle.
    const trackWithoutSource = Uint8Array.of(0x82, 0x01, 0x03, 0x0a, 0x01, 0x78);
    await expectRefusal(client.request(trackWithoutSource), Error_Code.INVALID_REQUEST, /CreateAudioTrackRequest is incomplete .*source_handle.*required field not set/);
    // FfiRequest.new_audio_source (26, tag 0xd2 0x01) = {}: no type.
    const sourceWithoutType = Uint8Array.of(0xd2, 0x01, 0x00);
    await expectRefusal(client.request(sourceWithoutType), Error_Code.INVALID_REQUEST, /NewAudioSourceRequest is incomplete .*type/);
    await assertServes(client);
  });

  test('8. a message over --max-message-size: the stream fails with RESOURCE_EXHAUSTED, the broker goes on', async () => {
    // No resume grace: the test process that sent the message lives on, so its broken session would
    // otherwise wait out the grace period for a resume.
    const small = await startBroker(['--max-message-size', '65536', '--resume-grace', '0']);
    let victim: BrokerClient | undefined;
    let next: BrokerClient | undefined;
    try {
      // Inline bytes: a lane would carry them beside the message (and the 64 KiB limit still bounds the frame).
      victim = await BrokerClient.connect(small.address, { clientName: 'oversized', mediaLane: false });
      const source = await newSource(victim); // a handle, to see it released with the session
      const [ptr, bytes] = audioBuffer(new Int16Array(51200)); // 100 KiB
      let err: unknown;
      try {
        await victim.request(captureRequest(source, { dataPtr: ptr, samplesPerChannel: 51200 }), [[ptr, bytes]]);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof BrokerError, `expected a BrokerError, got ${String(err)}`);
      assert.equal(err.grpcCode, grpc.status.RESOURCE_EXHAUSTED, err.message);
      assert.equal(victim.closeReason?.grpcCode, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(victim.isOpen, false);
      await waitFor(
        async () => {
          const info = await small.info();
          return info.sessions.length === 0 && info.ownedHandles === 0n;
        },
        2000,
        "the failed session and its handle to be released",
      );

      next = await BrokerClient.connect(small.address, { clientName: 'after' });
      await assertServes(next);
      assert.equal(small.proc.exitCode, null, 'the small broker is still running');
    } finally {
      await victim?.close();
      await next?.close();
      assert.equal(await small.stop(), 0);
    }
  });

  test('9. a value the library itself rejects (a source handle as a track handle): FFI_ERROR', async () => {
    const source = await newSource(client);
    try {
      await expectRefusal(
        client.request(ffi({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: source, type: AudioStreamType.AUDIO_STREAM_NATIVE }) })),
        Error_Code.FFI_ERROR,
        /liblivekit_ffi refused NewAudioStreamRequest/,
      );
      // The refusal points at the broker log; the library's reason is there.
      await waitFor(() => broker.logs.some((r) => r.component === 'livekit_ffi' && /NewAudioStream.*is not a/.test(String(r.msg))), 2000, "the library's reason in the broker log");
      await assertServes(client);
    } finally {
      await client.dropHandles([source]);
    }
  });

  test('afterwards: the broker serves, and the bystander never stopped receiving', async (t) => {
    assert.equal(broker.proc.exitCode, null, 'broker still running');
    assert.equal(broker.proc.signalCode, null, 'broker not killed');
    const info = await broker.info();
    assert.equal(info.sessions.find((s) => s.sessionId === bystanderSession)?.ownedHandles, BigInt(bystanderHandles.length), "the bystander's session and handles");
    assert.equal(info.sessions.find((s) => s.sessionId === client.sessionId)?.ownedHandles, 0n, 'the bad-input session owns nothing left over');
    await assertServes(client);

    // Two more progress lines after all cases, then every second since the baseline.
    const seen = progress.length;
    await waitFor(() => progress.length >= seen + 2, 5000, 'two more progress lines of the bystander');
    assert.equal(bystander.proc.exitCode, null, 'the bystander is still running');
    const since = progress.slice(progress.indexOf(baseline));
    for (let i = 1; i < since.length; i++) {
      const gained = since[i]!.frames - since[i - 1]!.frames;
      assert.ok(gained >= MIN_FRAMES_PER_SECOND, `bystander second ${i}: ${gained} frames (${since.map((p) => p.frames).join(' → ')})`);
    }
    const last = since[since.length - 1]!;
    const rate = ((last.frames - baseline.frames) * 1000) / (last.at - baseline.at);
    t.diagnostic(`bystander frames, one line a second: ${since.map((p) => p.frames).join(' → ')} (${rate.toFixed(0)}/s)`);
    assert.ok(rate >= MIN_FRAMES_PER_SECOND, `bystander averaged ${rate.toFixed(0)} frames/s over ${since.length - 1} s`);

    // Every case above was answered by a refusal or a status, none by a failure of the broker itself.
    const ownFailures = broker.logs.filter((r) => typeof r.level === 'number' && r.level >= 50 && r.component !== 'livekit_ffi');
    assert.deepEqual(ownFailures, [], 'error or fatal records from the broker itself');
  });
});
