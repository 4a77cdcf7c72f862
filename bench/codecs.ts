#!/usr/bin/env node
// Codec micro-benchmark on the messages of the audio path: which protobuf runtime decodes and
// encodes them fastest. `node dist/bench/codecs.js [--quick]` prints one JSON object.
//
// - livekit schema: protobuf-es v1 (the classes @livekit/rtc-ffi-bindings ships, whose objects the
//   broker works on), protobuf-es v2 with a registry built at run time from the v1 types' field info
//   (the package ships no .proto files), protobufjs with a Root built the same way, and the
//   broker's own decoder and encoder over the v1 objects (broker/livekit_decoding.ts, _encoding.ts).
// - contract: protobuf-es v2 (generated, what the broker uses) with toBinary + Buffer.from as
//   before, toBinary with a Buffer view, the one-pass encoder (proto/server_message_encoding.ts),
//   the hand-written ClientMessage decoder (proto/client_message_decoding.ts), and protobufjs from
//   proto/ffi_broker.proto.
import fs from 'node:fs';
import path from 'node:path';
import { create, createFileRegistry, fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type DescriptorProto, type EnumDescriptorProto, type FieldDescriptorProto } from '@bufbuild/protobuf/wkt';
import protobuf from 'protobufjs';
import { FFI_EVENT, FFI_REQUEST, FFI_RESPONSE, FfiEvent, FfiRequest, FfiResponse, ROOT_TYPES, type SchemaMessage } from '../broker/livekit_schema.js';
import { decodeLivekit } from '../broker/livekit_decoding.js';
import { encodeLivekit } from '../broker/livekit_encoding.js';
import { ClientMessageSchema, ServerMessageSchema, type ServerMessage } from '../proto/gen/ffi_broker_pb.js';
import { decodeClientMessage } from '../proto/client_message_decoding.js';
import { encodeServerMessage } from '../proto/server_message_encoding.js';

// --- the messages: the bytes the audio path carries ------------------------------------------

const DATA_PTR = 0x7f3a_1c00_4000n;
const captureRequest = new FfiRequest({
  message: {
    case: 'captureAudioFrame',
    value: { sourceHandle: 17n, buffer: { dataPtr: DATA_PTR, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }, requestAsyncId: 123_456n },
  },
}).toBinary();
const frameEvent = new FfiEvent({
  message: {
    case: 'audioStreamEvent',
    value: {
      streamHandle: 42n,
      message: { case: 'frameReceived', value: { frame: { handle: { id: 9_000_001n }, info: { dataPtr: DATA_PTR, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 } } } },
    },
  },
}).toBinary();
const captureResponse = new FfiResponse({ message: { case: 'captureAudioFrame', value: { asyncId: 123_456n } } }).toBinary();

const samples = new Uint8Array(960).map((_, i) => i);
const serverMessage: ServerMessage = create(ServerMessageSchema, {
  message: {
    case: 'events',
    value: { events: Array.from({ length: 20 }, (_, i) => ({ seq: BigInt(1000 + i), ffiEvent: frameEvent, buffers: [{ ptr: DATA_PTR, data: samples }] })) },
  },
});
const clientMessage = toBinary(
  ClientMessageSchema,
  create(ClientMessageSchema, { message: { case: 'request', value: { requestId: 77n, ffiRequest: captureRequest, buffers: [{ ptr: DATA_PTR, data: samples }] } } }),
);

// --- protobuf-es v2 registry from the v1 types --------------------------------------------------

interface V1Field {
  no: number;
  name: string;
  kind: 'scalar' | 'message' | 'enum' | 'map';
  T: { typeName: string } | number;
  K?: number;
  V?: { kind: string; T: { typeName: string } | number };
  repeated: boolean;
  req?: boolean;
  opt?: boolean;
  oneof?: { name: string };
}
interface V1Type {
  typeName: string;
  fields: { list(): readonly V1Field[] };
}
interface V1Enum {
  typeName: string;
  values: readonly { no: number; name: string }[];
}

const PACKAGE = 'livekit.proto';
const LABEL = { optional: 1, required: 2, repeated: 3 } as const;
const TYPE = { message: 11, enum: 14 } as const;
const pascal = (s: string) => s.replace(/(^|_)([a-z])/g, (_m, _u, c: string) => c.toUpperCase());

function livekitFileSet() {
  const messages = new Map<string, V1Type>();
  const enums = new Map<string, V1Enum>();
  const visit = (t: V1Type) => {
    if (messages.has(t.typeName)) return;
    messages.set(t.typeName, t);
    for (const f of t.fields.list()) {
      const target = f.kind === 'map' ? f.V!.T : f.T;
      if (typeof target === 'number') continue;
      if (f.kind === 'enum' || f.V?.kind === 'enum') enums.set(target.typeName, target as unknown as V1Enum);
      else visit(target as V1Type);
    }
  };
  for (const root of ROOT_TYPES) visit(root as unknown as V1Type);
  const descriptors = new Map<string, Partial<DescriptorProto>>();
  const topMessages: Partial<DescriptorProto>[] = [];
  const topEnums: Partial<EnumDescriptorProto>[] = [];
  const parentOf = (typeName: string) => typeName.slice(0, typeName.lastIndexOf('.'));
  const nameOf = (typeName: string) => typeName.slice(typeName.lastIndexOf('.') + 1);
  const field = (f: V1Field, oneofs: string[]): Partial<FieldDescriptorProto> => {
    const kind = f.kind === 'map' ? 'message' : f.kind;
    const d: Partial<FieldDescriptorProto> = {
      name: f.name,
      number: f.no,
      label: f.kind === 'map' || f.repeated ? LABEL.repeated : f.req ? LABEL.required : LABEL.optional,
      type: kind === 'scalar' ? (f.T as number) : TYPE[kind as 'message' | 'enum'],
    };
    if (kind !== 'scalar' && f.kind !== 'map') d.typeName = `.${(f.T as { typeName: string }).typeName}`;
    if (f.oneof !== undefined) {
      let index = oneofs.indexOf(f.oneof.name);
      if (index < 0) index = oneofs.push(f.oneof.name) - 1;
      d.oneofIndex = index;
    }
    return d;
  };
  for (const [typeName, t] of messages) {
    const oneofs: string[] = [];
    const nested: Partial<DescriptorProto>[] = [];
    const fields = t.fields.list().map((f) => {
      const d = field(f, oneofs);
      if (f.kind === 'map') {
        const entry = `${pascal(f.name)}Entry`;
        d.typeName = `.${typeName}.${entry}`;
        const value = f.V!;
        nested.push({
          name: entry,
          options: { mapEntry: true } as DescriptorProto['options'],
          field: [
            { name: 'key', number: 1, label: LABEL.optional, type: f.K! } as FieldDescriptorProto,
            (typeof value.T === 'number'
              ? { name: 'value', number: 2, label: LABEL.optional, type: value.T }
              : { name: 'value', number: 2, label: LABEL.optional, type: TYPE[value.kind as 'message' | 'enum'], typeName: `.${value.T.typeName}` }) as FieldDescriptorProto,
          ],
        });
      }
      return d as FieldDescriptorProto;
    });
    descriptors.set(typeName, { name: nameOf(typeName), field: fields, oneofDecl: oneofs.map((name) => ({ name })) as DescriptorProto['oneofDecl'], nestedType: nested as DescriptorProto[], enumType: [] });
  }
  // A type nested in one the roots do not reach (DataStream.Header) still needs its parent.
  for (const typeName of [...descriptors.keys(), ...enums.keys()]) {
    for (let parent = parentOf(typeName); parent !== PACKAGE; parent = parentOf(parent)) {
      if (!descriptors.has(parent)) descriptors.set(parent, { name: nameOf(parent), field: [], oneofDecl: [], nestedType: [], enumType: [] });
    }
  }
  for (const [typeName, d] of descriptors) {
    const parent = descriptors.get(parentOf(typeName));
    if (parent !== undefined) parent.nestedType!.push(d as DescriptorProto);
    else topMessages.push(d);
  }
  for (const [typeName, e] of enums) {
    const d = { name: nameOf(typeName), value: e.values.map((v) => ({ name: v.name, number: v.no })) } as EnumDescriptorProto;
    const parent = descriptors.get(parentOf(typeName));
    if (parent !== undefined) parent.enumType!.push(d);
    else topEnums.push(d);
  }
  const file = create(FileDescriptorProtoSchema, { name: 'livekit_ffi.proto', package: PACKAGE, syntax: 'proto2', messageType: topMessages as DescriptorProto[], enumType: topEnums as EnumDescriptorProto[] });
  return { set: create(FileDescriptorSetSchema, { file: [file] }), messages, enums };
}

// --- protobufjs Root from the same types --------------------------------------------------------

const PBJS_SCALAR: Record<number, string> = { 1: 'double', 2: 'float', 3: 'int64', 4: 'uint64', 5: 'int32', 6: 'fixed64', 7: 'fixed32', 8: 'bool', 9: 'string', 12: 'bytes', 13: 'uint32', 15: 'sfixed32', 16: 'sfixed64', 17: 'sint32', 18: 'sint64' };

function livekitRoot(messages: Map<string, V1Type>, enums: Map<string, V1Enum>): protobuf.Root {
  const root = new protobuf.Root();
  const ref = (t: { typeName: string } | number) => (typeof t === 'number' ? PBJS_SCALAR[t]! : `.${t.typeName}`);
  const sorted = (names: Iterable<string>) => [...names].sort((a, b) => a.split('.').length - b.split('.').length);
  // Parents before nested types: define() creates the namespace path, add() nests by name.
  const namespaceOf = (typeName: string) => {
    const parent = typeName.slice(0, typeName.lastIndexOf('.'));
    return (root.lookup(parent) as protobuf.Namespace | null) ?? root.define(parent);
  };
  for (const typeName of sorted(messages.keys())) {
    const t = messages.get(typeName)!;
    const type = new protobuf.Type(typeName.slice(typeName.lastIndexOf('.') + 1));
    const oneofs = new Map<string, string[]>();
    for (const f of t.fields.list()) {
      const name = f.name.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
      if (f.kind === 'map') type.add(new protobuf.MapField(name, f.no, PBJS_SCALAR[f.K!]!, ref(f.V!.T)));
      else type.add(new protobuf.Field(name, f.no, ref(f.T), f.repeated ? 'repeated' : f.req ? 'required' : 'optional'));
      if (f.oneof !== undefined) oneofs.set(f.oneof.name, [...(oneofs.get(f.oneof.name) ?? []), name]);
    }
    for (const [name, fields] of oneofs) type.add(new protobuf.OneOf(name, fields));
    namespaceOf(typeName).add(type);
  }
  for (const [typeName, e] of enums) namespaceOf(typeName).add(new protobuf.Enum(typeName.slice(typeName.lastIndexOf('.') + 1), Object.fromEntries(e.values.map((v) => [v.name, v.no]))));
  root.resolveAll();
  return root;
}

// --- timing -------------------------------------------------------------------------------------

/** ns per call: the median of `rounds` rounds, after a warm-up round. */
function time(fn: () => unknown, iterations: number, rounds: number): number {
  let sink: unknown;
  for (let i = 0; i < iterations; i++) sink = fn();
  const perRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) sink = fn();
    perRound.push(Number(process.hrtime.bigint() - start) / iterations);
  }
  if (sink === Symbol.for('never')) console.log(sink);
  perRound.sort((a, b) => a - b);
  return Math.round(perRound[Math.floor(perRound.length / 2)]!);
}

const ROOT = path.join(__dirname, '../..');
const versionOf = (pkg: string) => JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version as string;

function main(): void {
  const quick = process.argv.includes('--quick');
  const n = quick ? 20_000 : 200_000;
  const rounds = quick ? 3 : 7;
  const { set, messages, enums } = livekitFileSet();
  const registry = createFileRegistry(set);
  const v2 = (name: string) => registry.getMessage(`${PACKAGE}.${name}`) as DescMessage;
  const v2Request = v2('FfiRequest');
  const v2Response = v2('FfiResponse');
  const v2Event = v2('FfiEvent');
  const root = livekitRoot(messages, enums);
  const pbRequest = root.lookupType(`${PACKAGE}.FfiRequest`);
  const pbResponse = root.lookupType(`${PACKAGE}.FfiResponse`);
  const pbEvent = root.lookupType(`${PACKAGE}.FfiEvent`);
  const contract = protobuf.loadSync(path.join(ROOT, 'proto/ffi_broker.proto'));
  const pbServerMessage = contract.lookupType('livekit.ffi_broker.v1.ServerMessage');
  const pbClientMessage = contract.lookupType('livekit.ffi_broker.v1.ClientMessage');

  // Each codec must read back what v1 wrote, or its figure means nothing.
  const check = (ok: boolean, what: string) => {
    if (!ok) throw new Error(`codec check failed: ${what}`);
  };
  const v1Decoded = FfiRequest.fromBinary(captureRequest);
  check(Buffer.from(toBinary(v2Request, fromBinary(v2Request, captureRequest))).equals(captureRequest), 'v2 round trip of CaptureAudioFrameRequest');
  check(Buffer.from(pbRequest.encode(pbRequest.decode(captureRequest)).finish()).equals(captureRequest), 'protobufjs round trip of CaptureAudioFrameRequest');
  check(Buffer.from(toBinary(v2Event, fromBinary(v2Event, frameEvent))).equals(frameEvent), 'v2 round trip of AudioStreamEvent');
  check(Buffer.from(pbEvent.encode(pbEvent.decode(frameEvent)).finish()).equals(frameEvent), 'protobufjs round trip of AudioStreamEvent');
  check(encodeLivekit(v1Decoded as unknown as SchemaMessage).equals(captureRequest), 'one-pass CaptureAudioFrameRequest equals toBinary');
  const v2Bytes = toBinary(ServerMessageSchema, serverMessage);
  check(encodeServerMessage(serverMessage).equals(v2Bytes), 'one-pass ServerMessage equals toBinary');
  const pbServer = pbServerMessage.decode(v2Bytes);
  check(Buffer.from(pbServerMessage.encode(pbServer).finish()).equals(v2Bytes), 'protobufjs ServerMessage equals toBinary');

  const v2RequestMessage = fromBinary(v2Request, captureRequest);
  const pbRequestMessage = pbRequest.decode(captureRequest);
  const v2EventMessage = fromBinary(v2Event, frameEvent);
  const pbEventMessage = pbEvent.decode(frameEvent);
  const v1Event = FfiEvent.fromBinary(frameEvent);
  const ns = {
    'CaptureAudioFrameRequest (FfiRequest) decode': {
      'protobuf-es v1': time(() => FfiRequest.fromBinary(captureRequest), n, rounds),
      'by hand into v1 objects (broker/livekit_decoding.ts)': time(() => decodeLivekit(FFI_REQUEST, captureRequest), n, rounds),
      'protobuf-es v2': time(() => fromBinary(v2Request, captureRequest), n, rounds),
      protobufjs: time(() => pbRequest.decode(captureRequest), n, rounds),
    },
    'CaptureAudioFrameRequest (FfiRequest) encode': {
      'protobuf-es v1': time(() => v1Decoded.toBinary({ writeUnknownFields: false }), n, rounds),
      'one pass over v1 objects (broker/livekit_encoding.ts)': time(() => encodeLivekit(v1Decoded as unknown as SchemaMessage), n, rounds),
      'protobuf-es v2': time(() => toBinary(v2Request, v2RequestMessage, { writeUnknownFields: false }), n, rounds),
      protobufjs: time(() => pbRequest.encode(pbRequestMessage).finish(), n, rounds),
    },
    'CaptureAudioFrameResponse (FfiResponse) decode': {
      'protobuf-es v1': time(() => FfiResponse.fromBinary(captureResponse), n, rounds),
      'by hand into v1 objects (broker/livekit_decoding.ts)': time(() => decodeLivekit(FFI_RESPONSE, captureResponse), n, rounds),
      'protobuf-es v2': time(() => fromBinary(v2Response, captureResponse), n, rounds),
      protobufjs: time(() => pbResponse.decode(captureResponse), n, rounds),
    },
    'AudioStreamEvent frame_received (FfiEvent) decode': {
      'protobuf-es v1': time(() => FfiEvent.fromBinary(frameEvent), n, rounds),
      'by hand into v1 objects (broker/livekit_decoding.ts)': time(() => decodeLivekit(FFI_EVENT, frameEvent), n, rounds),
      'protobuf-es v2': time(() => fromBinary(v2Event, frameEvent), n, rounds),
      protobufjs: time(() => pbEvent.decode(frameEvent), n, rounds),
    },
    'AudioStreamEvent frame_received (FfiEvent) encode': {
      'protobuf-es v1': time(() => v1Event.toBinary(), n, rounds),
      'one pass over v1 objects (broker/livekit_encoding.ts)': time(() => encodeLivekit(v1Event as unknown as SchemaMessage), n, rounds),
      'protobuf-es v2': time(() => toBinary(v2Event, v2EventMessage), n, rounds),
      protobufjs: time(() => pbEvent.encode(pbEventMessage).finish(), n, rounds),
    },
    'ServerMessage, EventBatch of 20 events with 960-byte buffers, encode': {
      'protobuf-es v2 toBinary + Buffer.from (copy)': time(() => Buffer.from(toBinary(ServerMessageSchema, serverMessage)), n / 20, rounds),
      'protobuf-es v2 toBinary + Buffer view': time(() => {
        const b = toBinary(ServerMessageSchema, serverMessage);
        return Buffer.from(b.buffer, b.byteOffset, b.length);
      }, n / 20, rounds),
      'one pass (proto/server_message_encoding.ts)': time(() => encodeServerMessage(serverMessage), n / 20, rounds),
      protobufjs: time(() => pbServerMessage.encode(pbServer).finish(), n / 20, rounds),
    },
    'ServerMessage, EventBatch of 20 events with 960-byte buffers, decode': {
      'protobuf-es v2': time(() => fromBinary(ServerMessageSchema, v2Bytes), n / 20, rounds),
      protobufjs: time(() => pbServerMessage.decode(v2Bytes), n / 20, rounds),
    },
    'ClientMessage, a capture Request with a 960-byte buffer, decode': {
      'protobuf-es v2': time(() => fromBinary(ClientMessageSchema, clientMessage), n, rounds),
      'by hand (proto/client_message_decoding.ts)': time(() => decodeClientMessage(clientMessage), n, rounds),
      protobufjs: time(() => pbClientMessage.decode(clientMessage), n, rounds),
    },
  };
  console.log(
    JSON.stringify({
      node: process.version,
      runtimes: {
        'protobuf-es v1': versionOf('@livekit/rtc-ffi-bindings/node_modules/@bufbuild/protobuf'),
        'protobuf-es v2': versionOf('@bufbuild/protobuf'),
        protobufjs: versionOf('protobufjs'),
      },
      bytes: { capture_request: captureRequest.length, frame_event: frameEvent.length, capture_response: captureResponse.length, server_message: v2Bytes.length, client_message: clientMessage.length },
      iterations: n,
      rounds,
      unit: 'ns per call (median of rounds)',
      ns,
    }, null, 1),
  );
}

main();
