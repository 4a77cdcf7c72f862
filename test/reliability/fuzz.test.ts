// Fuzzing the real broker: structured mutations of valid FfiRequests (fields set to edge values,
// handles of nobody, pointers moved, buffers dropped, cut or added, kinds swapped, bytes cut and
// flipped) and random bytes. Every request must be answered, the broker must stay up and its
// memory bounded, and lkb_unvalidated_pointers_total (requests stopped just before the library
// because a pointer in them was not the broker's memory) must stay 0.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  ApmProcessStreamRequest,
  AudioFrameBufferInfo,
  AudioSourceType,
  AudioStreamType,
  CaptureAudioFrameRequest,
  FlushSoxResamplerRequest,
  NewApmRequest,
  NewAudioResamplerRequest,
  NewAudioSourceRequest,
  NewAudioStreamRequest,
  NewSoxResamplerRequest,
  PushSoxResamplerRequest,
  RemixAndResampleRequest,
  SoxQualityRecipe,
  SoxResamplerDataType,
} from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { PublishDataRequest } from '@livekit/rtc-ffi-bindings/proto/room_pb.js';
import { CreateAudioTrackRequest, CreateVideoTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { CaptureVideoFrameRequest, NewVideoSourceRequest, VideoBufferType, VideoConvertRequest, VideoSourceType } from '@livekit/rtc-ffi-bindings/proto/video_frame_pb.js';
import { BrokerClient } from '../../client/broker_client.js';
import { BrokerError } from '../../client/broker_error.js';
import { audioBuffer, dataBuffer } from '../../client/media.js';
import { videoFrameBuffer } from '../../client/video.js';
import { NativeShim } from '../../broker/native/shim.js';
import { RequestMemory } from '../../broker/request_memory.js';
import { walk, type SchemaMessage } from '../../broker/livekit_schema.js';
import { ffi } from '../helpers/assertions.js';
import { seededRandom } from '../helpers/random.js';
import { withTimeout } from '../helpers/processes.js';
import { MODE, byMode, report, scrape, snapshot, startProbedBroker, type ProbedBroker, type Snapshot } from './probe.js';

const TOTAL = Number(process.env.RELIABILITY_FUZZ_REQUESTS ?? byMode(12_000, 120_000));
// A fresh session every so many requests: what a round created is released with its session,
// which the RSS bound below then also covers.
const ROUND = 1_000;
const IN_FLIGHT = Number(process.env.RELIABILITY_FUZZ_IN_FLIGHT ?? 32);
const ANSWER_TIMEOUT_MS = 30_000;
// RSS may grow with allocator caches and library pools; unbounded growth would pass this fast.
const RSS_GROWTH_LIMIT_MIB = 300;

// A failing run can be replayed with RELIABILITY_FUZZ_SEED.
const SEED = Number(process.env.RELIABILITY_FUZZ_SEED ?? Date.now() % 2 ** 31);
const { random, int, pick } = seededRandom(SEED);
const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));

interface Seed {
  request: FfiRequest;
  buffers: [bigint, Uint8Array][];
}

interface Handles {
  source: bigint;
  track: bigint;
  stream: bigint;
  resampler: bigint;
  apm: bigint;
  sox: bigint;
  videoSource: bigint;
  videoTrack: bigint;
}

// protobuf-es v1 scalar types (ScalarType): 64-bit ones are bigints.
const INT64 = new Set([3, 4, 6, 16, 18]);
const UNSIGNED64 = new Set([4, 6]);
const UNSIGNED32 = new Set([7, 13]);
const BOOL = 8;
const STRING = 9;
const BYTES = 12;
const FLOAT = new Set([1, 2]);

let maxIssued = 1n;

function edgeValue(fieldType: number): unknown {
  if (INT64.has(fieldType)) {
    const unsigned = UNSIGNED64.has(fieldType);
    return pick([0n, 1n, maxIssued, maxIssued + 1n, BigInt(int(Number(maxIssued) + 3)), unsigned ? 2n ** 64n - 1n : -1n, unsigned ? 2n ** 63n : 2n ** 63n - 1n, unsigned ? 0xdeadbeefn : -(2n ** 63n), BigInt(int(2 ** 31)) * 4096n]);
  }
  if (UNSIGNED32.has(fieldType)) return pick([0, 1, 2, 3, 7, 100, 480, 960, 0x7fffffff, 0xffffffff, 0x80000000, int(2 ** 32), 48000, 44100, 8000]);
  if (fieldType === BOOL) return random() < 0.5;
  if (fieldType === STRING) return pick(['', 'x', 'ws://127.0.0.1:1', '../../etc/passwd', '\u0000', 'é'.repeat(1000), String(int(1e9))]);
  if (fieldType === BYTES) return randomBytes(int(64));
  if (FLOAT.has(fieldType)) return pick([0, -1, Number.NaN, Number.POSITIVE_INFINITY, 1e308, 0.5, 48000]);
  // int32 and friends: negative numbers are what the library reads as huge sizes.
  return pick([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 480, int(2 ** 16)]);
}

interface Slot {
  message: SchemaMessage;
  field: { name: string; localName: string; kind: string; T: unknown; repeated: boolean; oneof?: { localName: string } };
}

/** Every scalar or enum field of the messages set under `message` (one level of oneof included). */
function slots(message: SchemaMessage, out: Slot[] = [], depth = 0): Slot[] {
  if (depth > 6) return out;
  for (const field of message.getType().fields.list()) {
    if (field.repeated || field.kind === 'map') continue;
    const value = field.oneof === undefined ? message[field.localName] : (message[field.oneof.localName] as { case?: string; value?: unknown } | undefined)?.case === field.localName ? (message[field.oneof.localName] as { value: unknown }).value : undefined;
    if (field.kind === 'message') {
      if (value !== undefined) slots(value as SchemaMessage, out, depth + 1);
      continue;
    }
    if (field.oneof !== undefined) continue;
    out.push({ message, field: field as Slot['field'] });
  }
  return out;
}

function setSlot({ message, field }: Slot, value: unknown): void {
  message[field.localName] = value;
}

function mutateField(request: FfiRequest): string {
  const all = slots(request as unknown as SchemaMessage);
  if (all.length === 0) return 'field:none';
  const slot = pick(all);
  const v = slot.field.kind === 'enum' ? pick([0, 1, 2, 3, 7, 99, -1, 2 ** 31 - 1]) : edgeValue(slot.field.T as number);
  setSlot(slot, v);
  return `field:${slot.field.name}`;
}

function mutateHandles(request: FfiRequest): string {
  let changed = 0;
  walk(request as unknown as SchemaMessage, {
    handleRef: (holder, field) => {
      holder[field.localName] = pick([0n, BigInt(1 + int(Number(maxIssued) + 2)), 2n ** 64n - 1n, 2n ** 63n]);
      changed++;
    },
  });
  return `handles:${changed}`;
}

function mutatePointers(request: FfiRequest, buffers: [bigint, Uint8Array][]): string {
  let changed = 0;
  walk(request as unknown as SchemaMessage, {
    pointer: (holder, field, value) => {
      holder[field.localName] = pick([0n, value + 1n, value - 1n, value + BigInt(int(4096)), value - BigInt(int(4096)), 2n ** 64n - 1n, BigInt(int(2 ** 31)) * 4096n, buffers[0]?.[0] ?? 0n]);
      changed++;
    },
  });
  return `pointers:${changed}`;
}

function mutateBuffers(buffers: [bigint, Uint8Array][]): [string, [bigint, Uint8Array][]] {
  const out = buffers.map(([p, d]) => [p, d] as [bigint, Uint8Array]);
  switch (int(5)) {
    case 0:
      out.splice(int(out.length + 1), 1);
      return ['buffers:missing', out];
    case 1:
      if (out.length > 0) {
        const i = int(out.length);
        out[i] = [out[i]![0], out[i]![1].subarray(0, int(out[i]![1].length))];
      }
      return ['buffers:truncated', out];
    case 2:
      out.push([BigInt(int(2 ** 31)) * 8n, randomBytes(int(256))]);
      return ['buffers:extra', out];
    case 3:
      if (out.length > 0) out.push([out[0]![0], randomBytes(int(64))]);
      return ['buffers:duplicate-ptr', out];
    default:
      if (out.length > 0) out[0] = [out[0]![0] + BigInt(1 + int(64)), out[0]![1]];
      return ['buffers:shifted', out];
  }
}

function mutateBytes(bytes: Uint8Array): [string, Uint8Array] {
  const out = Uint8Array.from(bytes);
  switch (int(3)) {
    case 0:
      return ['bytes:truncated', out.subarray(0, int(out.length))];
    case 1:
      for (let i = 0, n = 1 + int(8); i < n && out.length > 0; i++) out[int(out.length)] = int(256);
      return ['bytes:flipped', out];
    default: {
      const at = int(out.length + 1);
      return ['bytes:inserted', Uint8Array.from([...out.subarray(0, at), ...randomBytes(1 + int(16)), ...out.subarray(at)])];
    }
  }
}

const REQUEST_KINDS = (FfiRequest as unknown as { fields: { list(): { no: number; localName: string; T: unknown }[] } }).fields.list();

/** The inner message re-tagged as another request kind: every field read with another type's meaning. */
function swapKind(bytes: Uint8Array): [string, Uint8Array] {
  // FfiRequest is one oneof of length-delimited messages: tag, length varint, body.
  let i = 1;
  let len = 0;
  for (let shift = 0; i < bytes.length; shift += 7) {
    const b = bytes[i++]!;
    len += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) break;
  }
  const body = bytes.subarray(i, i + len);
  const kind = pick(REQUEST_KINDS);
  const head: number[] = [];
  for (let tag = (kind.no << 3) | 2; ; tag >>>= 7) {
    if (tag < 0x80) {
      head.push(tag);
      break;
    }
    head.push((tag & 0x7f) | 0x80);
  }
  for (let n = body.length; ; n >>>= 7) {
    if (n < 0x80) {
      head.push(n);
      break;
    }
    head.push((n & 0x7f) | 0x80);
  }
  return [`swap:${kind.localName}`, Uint8Array.from([...head, ...body])];
}

/** A request of a random kind with random fields (handles among those issued). */
function randomKind(): [string, FfiRequest] {
  const kind = pick(REQUEST_KINDS);
  const Type = kind.T as new () => SchemaMessage;
  const value = new Type();
  for (const slot of slots(value)) if (random() < 0.7) setSlot(slot, slot.field.kind === 'enum' ? int(4) : edgeValue(slot.field.T as number));
  walk(value, { handleRef: (holder, field) => (holder[field.localName] = BigInt(1 + int(Number(maxIssued)))) });
  return [`random:${kind.localName}`, new FfiRequest({ message: { case: kind.localName, value } as unknown as FfiRequest['message'] })];
}

function seeds(h: Handles): Seed[] {
  const audio = audioBuffer(Int16Array.from({ length: 480 }, (_, n) => n * 7));
  const info = () => new AudioFrameBufferInfo({ dataPtr: audio[0], numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 });
  const frame = videoFrameBuffer(VideoBufferType.I420, 32, 16, randomBytes(32 * 16 + 2 * 16 * 8));
  const data = dataBuffer(randomBytes(100));
  return [
    { request: ffi({ case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: h.source, buffer: info() }) }), buffers: [audio] },
    { request: ffi({ case: 'remixAndResample', value: new RemixAndResampleRequest({ resamplerHandle: h.resampler, buffer: info(), sampleRate: 16000, numChannels: 1 }) }), buffers: [audio] },
    { request: ffi({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: h.apm, dataPtr: audio[0], size: 960, sampleRate: 48000, numChannels: 1 }) }), buffers: [audio] },
    { request: ffi({ case: 'pushSoxResampler', value: new PushSoxResamplerRequest({ resamplerHandle: h.sox, dataPtr: audio[0], size: 960 }) }), buffers: [audio] },
    { request: ffi({ case: 'flushSoxResampler', value: new FlushSoxResamplerRequest({ resamplerHandle: h.sox }) }), buffers: [] },
    { request: ffi({ case: 'captureVideoFrame', value: new CaptureVideoFrameRequest({ sourceHandle: h.videoSource, buffer: frame.info, rotation: 0, timestampUs: 1n }) }), buffers: frame.buffers },
    { request: ffi({ case: 'videoConvert', value: new VideoConvertRequest({ buffer: frame.info, dstType: VideoBufferType.RGBA, flipY: false }) }), buffers: frame.buffers },
    { request: ffi({ case: 'publishData', value: new PublishDataRequest({ localParticipantHandle: h.track, dataPtr: data[0], dataLen: 100n, reliable: true }) }), buffers: [data] },
    { request: ffi({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) }), buffers: [] },
    { request: ffi({ case: 'createVideoTrack', value: new CreateVideoTrackRequest({ name: 'v', sourceHandle: h.videoSource }) }), buffers: [] },
  ];
}

async function setUp(client: BrokerClient): Promise<Handles> {
  const call = async (message: FfiRequest['message']) => (await client.request(ffi(message))).response.message as { value?: unknown };
  // The first handle the response hands out (some responses wrap it in a oneof with an error).
  const id = (m: { value?: unknown }, what: string): bigint => {
    let h: bigint | undefined;
    if (m.value !== undefined) walk(m.value as SchemaMessage, { ownedHandle: (handle) => (h ??= handle) });
    assert.ok(h !== undefined, `no ${what} handle in ${JSON.stringify(m)}`);
    if (h > maxIssued) maxIssued = h;
    return h;
  };
  const source = id(await call({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) }), 'source');
  const track = id(await call({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 'a', sourceHandle: source }) }), 'track');
  const stream = id(await call({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: track, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: 48000, numChannels: 1 }) }), 'stream');
  const resampler = id(await call({ case: 'newAudioResampler', value: new NewAudioResamplerRequest({}) }), 'resampler');
  const apm = id(await call({ case: 'newApm', value: new NewApmRequest({ echoCancellerEnabled: false, gainControllerEnabled: false, highPassFilterEnabled: true, noiseSuppressionEnabled: false }) }), 'apm');
  const sox = id(
    await call({ case: 'newSoxResampler', value: new NewSoxResamplerRequest({ inputRate: 48000, outputRate: 16000, numChannels: 1, inputDataType: SoxResamplerDataType.SOXR_DATATYPE_INT16I, outputDataType: SoxResamplerDataType.SOXR_DATATYPE_INT16I, qualityRecipe: SoxQualityRecipe.SOXR_QUALITY_MEDIUM, flags: 0 }) }),
    'resampler',
  );
  const videoSource = id(await call({ case: 'newVideoSource', value: new NewVideoSourceRequest({ type: VideoSourceType.VIDEO_SOURCE_NATIVE, resolution: { width: 32, height: 16 } }) }), 'source');
  const videoTrack = id(await call({ case: 'createVideoTrack', value: new CreateVideoTrackRequest({ name: 'v', sourceHandle: videoSource }) }), 'track');
  return { source, track, stream, resampler, apm, sox, videoSource, videoTrack };
}

/** One fuzzed request: what was done to it, and the bytes and buffers to send. */
function mutate(all: Seed[]): { what: string; bytes: Uint8Array; buffers: [bigint, Uint8Array][] } {
  const r = random();
  if (r < 0.05) return { what: 'random-bytes', bytes: randomBytes(int(512)), buffers: random() < 0.5 ? [] : [[BigInt(int(2 ** 31)), randomBytes(int(128))]] };
  if (r < 0.15) {
    const [what, request] = randomKind();
    try {
      return { what, bytes: request.toBinary(), buffers: [] };
    } catch {
      // A required field left unset, which the schema will not encode: another kind's bytes instead.
      const [swapped, bytes] = swapKind(pick(all).request.toBinary());
      return { what: swapped, bytes, buffers: [] };
    }
  }
  const seed = pick(all);
  const request = FfiRequest.fromBinary(seed.request.toBinary());
  let buffers = seed.buffers;
  const whats: string[] = [];
  for (let n = 1 + int(3); n > 0; n--) {
    const m = int(5);
    if (m === 0) whats.push(mutateField(request));
    else if (m === 1) whats.push(mutateHandles(request));
    else if (m === 2) whats.push(mutatePointers(request, buffers));
    else if (m === 3) {
      const [what, next] = mutateBuffers(buffers);
      whats.push(what);
      buffers = next;
    } else whats.push('none');
  }
  let bytes: Uint8Array;
  try {
    bytes = request.toBinary();
  } catch {
    bytes = seed.request.toBinary(); // a value the schema cannot encode: fuzz the bytes instead
  }
  const b = random();
  if (b < 0.1) {
    const [what, next] = mutateBytes(bytes);
    whats.push(what);
    bytes = next;
  } else if (b < 0.2) {
    const [what, next] = swapKind(bytes);
    whats.push(what);
    bytes = next;
  }
  return { what: `${request.message.case}/${whats.join(',')}`, bytes, buffers };
}

let broker: ProbedBroker;

before(async () => {
  // No request-rate limit: the fuzzer sends as fast as the broker answers.
  broker = await startProbedBroker(['--max-request-rate', '0']);
});
after(async () => {
  await broker.stop();
});

test('the last check before the library stops a pointer that is not the broker\'s copy', () => {
  // The fuzzer below must find this counter at 0; this proves the check it reads can fire.
  const shim = new NativeShim();
  const [ptr, bytes] = audioBuffer(new Int16Array(480));
  const request = ffi({ case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: 1n, buffer: new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }) }) });
  const memory = new RequestMemory(shim, [{ ptr, data: bytes } as never], 1 << 20, undefined);
  try {
    walk((request.message.value as unknown as SchemaMessage), { pointer: (holder, field, value) => memory.bind(holder, field as never, value) });
    const info = (request.message.value as CaptureAudioFrameRequest).buffer!;
    const copy = info.dataPtr!;
    assert.notEqual(copy, ptr, 'bind points the request at the broker\'s copy');
    assert.equal(memory.foreignPointer(request as unknown as SchemaMessage), undefined);
    info.dataPtr = ptr; // the worker's own address
    assert.match(memory.foreignPointer(request as unknown as SchemaMessage) ?? '', /outside the broker's memory/);
    info.dataPtr = copy + 2n; // inside the copy, but 2 bytes too long
    assert.match(memory.foreignPointer(request as unknown as SchemaMessage) ?? '', /\+960 bytes\) is outside/);
    info.dataPtr = copy;
    info.samplesPerChannel = 481; // the size the library will read grew after bind
    assert.match(memory.foreignPointer(request as unknown as SchemaMessage) ?? '', /outside/);
  } finally {
    memory.release();
  }
});

test(`fuzzing: ${TOTAL} mutated and random requests (${MODE} mode, seed ${SEED})`, async () => {
  const started = Date.now();
  const baseline = await snapshot(broker);
  const outcomes = new Map<string, number>();
  const kinds = new Map<string, number>();
  const recent: string[] = [];
  let sent = 0;
  let answered = 0;
  let sessionFailures = 0;
  let afterFirstRound: Snapshot | undefined;
  let peakRssMiB = baseline.rssMiB;
  while (sent < TOTAL) {
    const client = await BrokerClient.connect(broker.address, { clientName: 'fuzzer', resumeWindowMs: 0 });
    const all = seeds(await setUp(client));
    const roundEnd = Math.min(TOTAL, sent + ROUND);
    const one = async (): Promise<void> => {
      while (sent < roundEnd && client.isOpen) {
        const { what, bytes, buffers } = mutate(all);
        sent++;
        recent.push(what);
        if (recent.length > 20) recent.shift();
        if (process.env.RELIABILITY_FUZZ_TRACE) console.error(what, Buffer.from(bytes).toString("hex").slice(0, 400));
        const kind = what.split(/[/:]/)[0]!;
        kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
        let outcome: string;
        try {
          await withTimeout(client.request(bytes, buffers), ANSWER_TIMEOUT_MS, `no answer within ${ANSWER_TIMEOUT_MS} ms to ${what}`);
          outcome = 'ok';
        } catch (err) {
          if (!(err instanceof BrokerError)) throw err;
          if (err.grpcCode !== undefined) sessionFailures++;
          outcome = err.codeName;
        }
        answered++;
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    };
    const crashed = async (detail: string): Promise<never> => {
      await new Promise((r) => setTimeout(r, 200)); // let the exit and the last log lines arrive
      const lastLogs = broker.logs.slice(-5).map((l) => JSON.stringify(l).slice(0, 400));
      throw new Error(`${detail} (seed ${SEED}); broker exit ${broker.proc.exitCode ?? broker.proc.signalCode}; last requests: ${recent.join(' | ')}; last broker logs: ${lastLogs.join('\n')}; stderr: ${broker.stderr().slice(-2000)}`);
    };
    try {
      await Promise.all(Array.from({ length: IN_FLIGHT }, one));
    } catch (err) {
      await crashed((err as Error).message);
    }
    if (sessionFailures > 0 || broker.proc.exitCode !== null || broker.proc.signalCode !== null) await crashed('the session failed or the broker exited');
    await client.close();
    const now = await snapshot(broker);
    afterFirstRound ??= now;
    peakRssMiB = Math.max(peakRssMiB, now.rssMiB);
  }
  // Everything of the closed sessions is released: handles, and the memory stays bounded.
  const final = await snapshot(broker);
  const metrics = await scrape(broker.metricsUrl);
  const figures = {
    seed: SEED,
    requests: sent,
    answered,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    outcomes: Object.fromEntries(outcomes),
    mutations: Object.fromEntries(kinds),
    sessionFailures,
    unvalidatedPointers: final.unvalidatedPointers,
    rssMiB: { baseline: baseline.rssMiB, afterFirstRound: afterFirstRound!.rssMiB, peak: peakRssMiB, final: final.rssMiB },
    fds: { baseline: baseline.fds, final: final.fds },
    ownedHandlesAfter: final.ownedHandles,
    refusedTotal: metrics.get('lkb_requests_refused_total'),
  };
  report('fuzz', figures);
  assert.equal(answered, sent, 'every request was answered');
  assert.equal(final.unvalidatedPointers, 0, 'no request reached the library with a pointer outside the broker\'s memory');
  assert.equal(sessionFailures, 0, 'no request-level input ended its session');
  assert.ok((outcomes.get('ok') ?? 0) > 0 && (outcomes.get('INVALID_REQUEST') ?? 0) > 0 && (outcomes.get('PERMISSION_DENIED') ?? 0) > 0, `a mix of outcomes: ${JSON.stringify(figures.outcomes)}`);
  assert.equal(final.ownedHandles, 0, 'closed sessions left no handles');
  assert.ok(final.rssMiB - afterFirstRound!.rssMiB < RSS_GROWTH_LIMIT_MIB, `RSS grew ${final.rssMiB - afterFirstRound!.rssMiB} MiB after the first round`);
  assert.ok(final.fds <= baseline.fds + 5, `fds ${baseline.fds} → ${final.fds}`);
  assert.equal(broker.proc.exitCode, null);
});
