// The broker's hand-written codecs against the reference codecs they replace: livekit.proto
// messages (broker/livekit_encoding.ts against protobuf-es v1 toBinary without unknown fields,
// broker/livekit_decoding.ts against v1 fromBinary),
// the contract's ServerMessage (proto/server_message_encoding.ts against protobuf-es v2 toBinary)
// byte for byte, ClientMessage (proto/client_message_decoding.ts against v2 fromBinary) object for
// object, and the async id patch of library output (broker/wire_patch.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create, equals, fromBinary, toBinary } from '@bufbuild/protobuf';
import { CaptureAudioFrameRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiEvent, FfiRequest, FfiResponse, ROOT_TYPES, type SchemaMessage } from '../broker/livekit_schema.js';
import { decodeLivekit } from '../broker/livekit_decoding.js';
import { encodeLivekit } from '../broker/livekit_encoding.js';
import { withAsyncId } from '../broker/wire_patch.js';
import { ClientMessageSchema, Error_Code, ServerMessageSchema, type ClientMessage, type ServerMessage } from '../proto/gen/ffi_broker_pb.js';
import { decodeClientMessage } from '../proto/client_message_decoding.js';
import { encodeServerMessage } from '../proto/server_message_encoding.js';
import { seededRandom } from './helpers/random.js';

const { random, int, pick } = seededRandom(0x5eed);
const bigintBelow = (bits: number) => BigInt.asUintN(bits, (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32))) >> BigInt(int(bits));

interface Field {
  no: number;
  name: string;
  localName: string;
  kind: 'scalar' | 'message' | 'enum' | 'map';
  T: unknown;
  V?: { kind: 'scalar' | 'message' | 'enum'; T: unknown };
  repeated: boolean;
  req?: boolean;
  oneof?: { localName: string };
}
type MessageType = { new (): SchemaMessage; typeName: string; fields: { list(): readonly Field[] } };

const STRINGS = ['', 'a', 'room-7', 'Grüße', '音声', '🎙️ live', 'x'.repeat(200)];

function scalar(type: number): unknown {
  switch (type) {
    case 1:
      return pick([0, -0, 1.5, -1e300, Number.MAX_VALUE, Infinity, Number.NaN, random()]);
    case 2:
      return Math.fround(pick([0, 1.5, -3.25e10, random() * 1000]));
    case 3:
    case 16:
    case 18:
      return BigInt.asIntN(64, bigintBelow(64));
    case 4:
    case 6:
      return pick([0n, 1n, 2n ** 53n + 1n, 2n ** 64n - 1n, bigintBelow(64)]);
    case 5:
    case 15:
    case 17:
      return pick([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), int(2 ** 31) - 2 ** 30]);
    case 7:
    case 13:
      return pick([0, 1, 127, 128, 2 ** 32 - 1, int(2 ** 32)]);
    case 8:
      return random() < 0.5;
    case 9:
      return pick(STRINGS);
    case 12:
      return Uint8Array.from({ length: pick([0, 1, 3, 200]) }, () => int(256));
  }
  throw new Error(`scalar type ${type}`);
}

function value(kind: string, T: unknown, depth: number): unknown {
  if (kind === 'scalar') return scalar(T as number);
  if (kind === 'enum') return pick((T as { values: { no: number }[] }).values).no;
  return randomMessage(T as MessageType, depth + 1);
}

function randomMessage(type: MessageType, depth = 0): SchemaMessage {
  const m = new type();
  const oneofs = new Map<string, Field[]>();
  for (const f of type.fields.list()) {
    if (f.oneof !== undefined) {
      oneofs.set(f.oneof.localName, [...(oneofs.get(f.oneof.localName) ?? []), f]);
      continue;
    }
    // Deep down only what must be there, so that the schema's cycles end.
    if (!f.req && (depth > 4 || random() < 0.5)) continue;
    if (f.kind === 'map') {
      m[f.localName] = Object.fromEntries(Array.from({ length: int(3) }, () => [pick(STRINGS), value(f.V!.kind, f.V!.T, depth)]));
    } else {
      m[f.localName] = f.repeated ? Array.from({ length: int(3) }, () => value(f.kind, f.T, depth)) : value(f.kind, f.T, depth);
    }
  }
  for (const [name, members] of oneofs) {
    if (depth > 0 && (depth > 4 || random() < 0.5)) continue;
    const f = pick(members);
    m[name] = { case: f.localName, value: value(f.kind, f.T, depth) };
  }
  return m;
}

test('livekit messages: the one-pass encoder writes what protobuf-es v1 writes, for random messages of every kind', () => {
  let compared = 0;
  for (const root of ROOT_TYPES as unknown as MessageType[]) {
    for (let i = 0; i < 1500; i++) {
      const m = randomMessage(root) as SchemaMessage & { toBinary(o: object): Uint8Array };
      let expected: Uint8Array;
      try {
        expected = m.toBinary({ writeUnknownFields: false });
      } catch {
        continue; // a required field of a nested type the generator left unset deep down
      }
      assert.deepEqual(encodeLivekit(m), Buffer.from(expected), `${root.typeName} ${(m.message as { case: string }).case}`);
      compared++;
    }
  }
  assert.ok(compared > 3000, `compared ${compared}`);
});

const varint = (v: number) => {
  const out: number[] = [];
  for (; v >= 0x80; v = Math.floor(v / 128)) out.push((v % 128) | 0x80);
  return Buffer.from([...out, v]);
};
const caseNumber = (type: unknown, localName: string) => (type as MessageType).fields.list().find((f) => f.localName === localName) as unknown as { no: number };
const unknownFields = (m: unknown) => (FfiRequest as unknown as { runtime: { bin: { listUnknownFields(m: unknown): readonly unknown[] } } }).runtime.bin.listUnknownFields(m);

test('livekit messages: unknown fields, at the top and nested, are not written', () => {
  const request = new CaptureAudioFrameRequest({ sourceHandle: 5n, buffer: { dataPtr: 4096n, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 } });
  const clean = new FfiRequest({ message: { case: 'captureAudioFrame', value: request } }).toBinary();
  // What a worker with another schema could send: field 999 inside the request, 1000 at the top.
  const inner = Buffer.concat([request.toBinary(), varint(999 << 3), varint(1)]);
  const hostile = Buffer.concat([varint((caseNumber(FfiRequest, 'captureAudioFrame').no << 3) | 2), varint(inner.length), inner, varint(1000 << 3), varint(7)]);
  const parsed = FfiRequest.fromBinary(hostile);
  assert.equal(unknownFields(parsed).length, 1, 'the test bytes carry an unknown field at the top');
  assert.equal(unknownFields(parsed.message.value).length, 1, 'and one nested');
  assert.deepEqual(encodeLivekit(parsed as unknown as SchemaMessage), Buffer.from(clean));
});

test('livekit messages: a required field left unset throws as protobuf-es v1 does', () => {
  const m = new FfiRequest({ message: { case: 'captureAudioFrame', value: { buffer: { dataPtr: 1n, numChannels: 1, sampleRate: 48000, samplesPerChannel: 1 } } } });
  assert.throws(() => m.toBinary(), /CaptureAudioFrameRequest.source_handle .*required field not set/);
  assert.throws(() => encodeLivekit(m as unknown as SchemaMessage), /cannot encode field livekit.proto.CaptureAudioFrameRequest.source_handle to binary: required field not set/);
});

test('the async id patch gives what re-encoding with the new id gives, and keeps every other byte', () => {
  const response = new FfiResponse({ message: { case: 'captureAudioFrame', value: { asyncId: 3n } } });
  const event = new FfiEvent({ message: { case: 'captureAudioFrame', value: { asyncId: 2n ** 40n, error: 'queue full' } } });
  for (const [message, type] of [[response, FfiResponse], [event, FfiEvent]] as const) {
    const no = caseNumber(type, 'captureAudioFrame');
    for (const id of [1n, 127n, 128n, 2n ** 35n, 2n ** 64n - 1n]) {
      const bytes = message.toBinary();
      const patched = withAsyncId(bytes, no.no, 1, id);
      const expected = type.fromBinary(bytes) as FfiResponse | FfiEvent;
      (expected.message.value as { asyncId: bigint }).asyncId = id;
      assert.deepEqual(patched, Buffer.from(expected.toBinary()), `${type.typeName} async id ${id}`);
    }
  }
  // A field the schema does not know (the library may be newer) survives the patch.
  const bytes = Buffer.concat([response.toBinary(), Buffer.concat([varint(1000 << 3), varint(7)])]);
  const no = caseNumber(FfiResponse, 'captureAudioFrame');
  const patched = withAsyncId(bytes, no.no, 1, 99n);
  assert.deepEqual(patched.subarray(-3), Buffer.concat([varint(1000 << 3), varint(7)]));
  assert.equal((FfiResponse.fromBinary(patched).message.value as { asyncId: bigint }).asyncId, 99n);
});

const frame = Uint8Array.from({ length: 960 }, (_, i) => i & 0xff);

const SERVER_MESSAGES: [string, ServerMessage][] = [
  ['empty', create(ServerMessageSchema, {})],
  ['an event batch of frames', create(ServerMessageSchema, { message: { case: 'events', value: { events: Array.from({ length: 20 }, (_, i) => ({ seq: BigInt(i + 1), ffiEvent: new Uint8Array([8, i]), buffers: [{ ptr: 0x7f00_0000_1000n + BigInt(i), data: frame }] })) } } })],
  ['an event with no bytes, seq 0, an empty buffer and a lane reference', create(ServerMessageSchema, { message: { case: 'events', value: { events: [{}, { seq: 2n ** 64n - 1n, buffers: [{}, { ptr: 1n, lane: { region: 3, offset: 2n ** 40n, length: 960n, release: 7n } }, { lane: {} }] }] } } })],
  ['a response with buffers', create(ServerMessageSchema, { message: { case: 'response', value: { requestId: 300n, ffiResponse: new Uint8Array([1, 2, 3]), buffers: [{ ptr: 5n, data: frame }] } } })],
  ['a refused request', create(ServerMessageSchema, { message: { case: 'response', value: { requestId: 1n, error: { code: Error_Code.PERMISSION_DENIED, message: 'not yours: ünïcode' } } } })],
  ['a welcome', create(ServerMessageSchema, { message: { case: 'welcome', value: { sessionId: 's-1', resumeToken: 't', bridges: ['a', 'b'], lane: { unavailable: 'tcp' } } } })],
  ['a notice', create(ServerMessageSchema, { message: { case: 'notice', value: { notice: { case: 'eventsDropped', value: { count: 3n, firstSeq: 10n, reason: 'slow' } } } } })],
];
SERVER_MESSAGES.push([
  'a batch of all of the above, and a batch in a batch',
  create(ServerMessageSchema, { message: { case: 'batch', value: { messages: [...SERVER_MESSAGES.map(([, m]) => m), create(ServerMessageSchema, { message: { case: 'batch', value: { messages: [SERVER_MESSAGES[3]![1]] } } })] } } }),
]);

test('ServerMessage: the one-pass encoder writes what protobuf-es v2 writes', () => {
  for (const [what, message] of SERVER_MESSAGES) assert.deepEqual(encodeServerMessage(message), Buffer.from(toBinary(ServerMessageSchema, message)), what);
});

test('ServerMessage: unknown fields a message carries are kept, as toBinary keeps them', () => {
  const message = create(ServerMessageSchema, { message: { case: 'events', value: { events: [{ seq: 1n, buffers: [{ ptr: 2n, data: frame }] }] } } });
  message.$unknown = [{ no: 99, wireType: 0, data: new Uint8Array([5]) }];
  const bytes = encodeServerMessage(message);
  assert.deepEqual(bytes, Buffer.from(toBinary(ServerMessageSchema, message)));
  assert.deepEqual(bytes.subarray(-3), Buffer.from([0x98, 0x06, 0x05]));
});

function randomClientMessage(depth = 0): ClientMessage {
  const buffer = () => ({ ptr: pick([0n, 1n, 2n ** 64n - 1n, bigintBelow(48)]), data: scalar(12) as Uint8Array, ...(random() < 0.3 ? { lane: { region: pick([0, 1, 2 ** 32 - 1]), offset: bigintBelow(64), length: bigintBelow(20), release: bigintBelow(64) } } : {}) });
  switch (int(depth > 1 ? 4 : 5)) {
    case 0:
      return create(ClientMessageSchema, {});
    case 1:
      return create(ClientMessageSchema, { message: { case: 'hello', value: { clientName: pick(STRINGS), pid: int(2 ** 32), lastSeq: bigintBelow(64), acceptsBatches: true, lane: { toBrokerBytes: 1n << 20n } } } });
    case 2:
      return create(ClientMessageSchema, {
        message: {
          case: 'request',
          value: { requestId: bigintBelow(64), ffiRequest: scalar(12) as Uint8Array, buffers: Array.from({ length: int(3) }, buffer), packageFiles: random() < 0.2 ? [{ path: '/p', distribution: 'd', version: '1', file: 'f' }] : [] },
        },
      });
    case 3:
      return create(ClientMessageSchema, { message: { case: 'dropHandles', value: { handles: Array.from({ length: int(4) }, () => bigintBelow(64)), requestId: bigintBelow(64) } } });
    default:
      return create(ClientMessageSchema, { message: { case: 'batch', value: { messages: Array.from({ length: int(4) }, () => randomClientMessage(depth + 1)) } } });
  }
}

test('ClientMessage: the hand-written decoder reads what protobuf-es v2 reads, also from concatenated (merged) and unknown-field-bearing bytes', () => {
  const unknown = Buffer.concat([varint(999 << 3), varint(5), varint((998 << 3) | 2), varint(2), Buffer.from([1, 2])]);
  for (let i = 0; i < 2000; i++) {
    const a = toBinary(ClientMessageSchema, randomClientMessage());
    const b = toBinary(ClientMessageSchema, randomClientMessage());
    for (const bytes of [a, Buffer.concat([a, b]), Buffer.concat([unknown, a, unknown])]) {
      const expected = fromBinary(ClientMessageSchema, bytes);
      const actual = decodeClientMessage(bytes);
      assert.ok(equals(ClientMessageSchema, actual, expected), `${Buffer.from(bytes).toString('hex')}`);
      assert.deepEqual(toBinary(ClientMessageSchema, actual), toBinary(ClientMessageSchema, expected, { writeUnknownFields: false }));
    }
  }
});

test('ClientMessage: truncated or malformed bytes throw, as protobuf-es v2 throws', () => {
  const bytes = toBinary(ClientMessageSchema, create(ClientMessageSchema, { message: { case: 'request', value: { requestId: 300n, ffiRequest: new Uint8Array(40), buffers: [{ ptr: 1n, data: frame }] } } }));
  for (const cut of [1, 3, 10, bytes.length - 1]) {
    assert.throws(() => fromBinary(ClientMessageSchema, bytes.subarray(0, cut)));
    assert.throws(() => decodeClientMessage(bytes.subarray(0, cut)), /premature EOF/, `cut at ${cut}`);
  }
  assert.throws(() => decodeClientMessage(Buffer.from([0x00, 0x01])), /field no 0/);
  assert.throws(() => decodeClientMessage(Buffer.from([0x10, 0x01])), /wire type 0, expected 2/);
  assert.throws(() => decodeClientMessage(Buffer.from([0x08 | 7, 0x01])), /wire type 7/);
});

test('livekit messages: the hand-written decoder reads what protobuf-es v1 reads, from random, merged and mutated bytes', () => {
  let mutatedRead = 0;
  for (const type of ROOT_TYPES) {
    const root = type as unknown as MessageType & { fromBinary(b: Uint8Array): SchemaMessage };
    const samples: Uint8Array[] = [];
    while (samples.length < 1000) {
      try {
        samples.push((randomMessage(root) as SchemaMessage & { toBinary(): Uint8Array }).toBinary());
      } catch {
        // a required field left unset deep down
      }
    }
    for (let i = 0; i < samples.length; i++) {
      const bytes = samples[i]!;
      assert.deepStrictEqual(decodeLivekit(type, bytes), root.fromBinary(bytes), `${root.typeName} ${Buffer.from(bytes).toString('hex')}`);
      const merged = Buffer.concat([bytes, samples[(i + 1) % samples.length]!]);
      assert.deepStrictEqual(decodeLivekit(type, merged), root.fromBinary(merged), `${root.typeName} merged ${merged.toString('hex')}`);
      // A byte changed or the message cut: where this decoder reads it, v1 reads the same (it may
      // read more: this decoder refuses fields that run past their message or have the wrong wire type).
      const mutated = Buffer.from(bytes.length > 0 && random() < 0.5 ? bytes.subarray(0, int(bytes.length)) : bytes);
      if (mutated.length > 0) mutated[int(mutated.length)] = int(256);
      let ours: SchemaMessage | undefined;
      try {
        ours = decodeLivekit(type, mutated);
      } catch {
        continue;
      }
      const theirs = root.fromBinary(mutated);
      assert.deepEqual(encodeLivekitOrError(ours), encodeLivekitOrError(theirs), `${root.typeName} mutated ${mutated.toString('hex')}`);
      mutatedRead++;
    }
  }
  assert.ok(mutatedRead > 300, `mutated messages read: ${mutatedRead}`);
});

function encodeLivekitOrError(m: SchemaMessage): Buffer | string {
  try {
    return encodeLivekit(m);
  } catch (err) {
    return String(err);
  }
}
