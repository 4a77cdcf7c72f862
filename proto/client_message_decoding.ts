// ClientMessage read by hand: every request a worker sends comes through here, and protobuf-es v2's
// reflective fromBinary took several times longer than the rest of the broker's decoding of it
// (bench/codecs.ts). It builds the same objects fromBinary builds (test/wire_encoding.test.ts
// compares them on random messages); bytes are views into the received message, as there. The
// rare messages (Hello, PackageFile) are read by fromBinary. Fields this schema does not know are
// skipped, not kept. Loading this module fails if a message read here gained, lost or retyped a field.
import { ScalarType, fromBinary, mergeFromBinary, type DescMessage } from '@bufbuild/protobuf';
import {
  BufferSchema,
  ClientBatchSchema,
  ClientMessageSchema,
  DropHandlesSchema,
  HelloSchema,
  LaneRefSchema,
  PackageFileSchema,
  RequestSchema,
  type Buffer as WireBuffer,
  type ClientMessage,
  type DropHandles,
  type LaneRef,
  type Request,
} from './gen/ffi_broker_pb.js';
import { WireReader } from './wire_reader.js';
import { WIRE_DELIMITED, WIRE_VARINT } from './wire_writer.js';

const READ: [DescMessage, string[]][] = [
  [ClientMessageSchema, ['hello:1:message', 'request:2:message', 'drop_handles:3:message', 'batch:4:message']],
  [ClientBatchSchema, ['messages:1:list']],
  [RequestSchema, ['request_id:1:uint64', 'ffi_request:2:bytes', 'buffers:3:list', 'package_files:4:list']],
  [BufferSchema, ['ptr:1:uint64', 'data:2:bytes', 'lane:3:message']],
  [LaneRefSchema, ['region:1:uint32', 'offset:2:uint64', 'length:3:uint64', 'release:4:uint64']],
  [DropHandlesSchema, ['handles:1:list', 'request_id:2:uint64']],
];
for (const [schema, expected] of READ) {
  const actual = schema.fields.map((f) => `${f.name}:${f.number}:${f.fieldKind === 'scalar' ? ScalarType[f.scalar].toLowerCase() : f.fieldKind}`);
  if (actual.join() !== expected.join()) throw new Error(`client_message_decoding: ${schema.typeName} is now {${actual.join(', ')}}; update this decoder (it reads {${expected.join(', ')}})`);
}

const EMPTY = new Uint8Array(0);

/** Calls `field(number, wireType)` for each field of the message the reader is in, until its end. */
function fields(r: WireReader, field: (no: number, wireType: number) => boolean): void {
  while (r.pos < r.end) {
    const tag = r.uint32();
    const no = tag >>> 3;
    const wireType = tag & 7;
    if (no === 0) throw new Error('illegal tag: field no 0');
    if (!field(no, wireType)) r.skip(wireType);
  }
}

function expect(wireType: number, expected: number, typeName: string, no: number): void {
  if (wireType !== expected) throw new Error(`${typeName} field ${no}: wire type ${wireType}, expected ${expected}`);
}

/** Reads a nested message: `read` runs with the reader bounded by the nested message's end. */
function nested<T>(r: WireReader, read: (r: WireReader) => T): T {
  const end = r.delimitedEnd();
  const outer = r.end;
  r.end = end;
  const value = read(r);
  r.end = outer;
  r.pos = end;
  return value;
}

// Each reader takes the message read so far for the same field, if any: a message field that comes
// again merges into it (scalars replaced, lists appended), as protobuf-es and every protobuf runtime do.

function readLane(r: WireReader, into?: LaneRef): LaneRef {
  const lane: LaneRef = into ?? { $typeName: 'livekit.ffi_broker.v1.LaneRef', region: 0, offset: 0n, length: 0n, release: 0n };
  fields(r, (no, wt) => {
    if (no > 4) return false;
    expect(wt, WIRE_VARINT, 'LaneRef', no);
    if (no === 1) lane.region = r.uint32();
    else if (no === 2) lane.offset = r.uint64();
    else if (no === 3) lane.length = r.uint64();
    else lane.release = r.uint64();
    return true;
  });
  return lane;
}

function readBuffer(r: WireReader): WireBuffer {
  const buffer: WireBuffer = { $typeName: 'livekit.ffi_broker.v1.Buffer', ptr: 0n, data: EMPTY };
  fields(r, (no, wt) => {
    if (no === 1) {
      expect(wt, WIRE_VARINT, 'Buffer', no);
      buffer.ptr = r.uint64();
    } else if (no === 2) {
      expect(wt, WIRE_DELIMITED, 'Buffer', no);
      buffer.data = r.bytes();
    } else if (no === 3) {
      expect(wt, WIRE_DELIMITED, 'Buffer', no);
      buffer.lane = nested(r, (lane) => readLane(lane, buffer.lane));
    } else return false;
    return true;
  });
  return buffer;
}

function readRequest(r: WireReader, into?: Request): Request {
  const request: Request = into ?? { $typeName: 'livekit.ffi_broker.v1.Request', requestId: 0n, ffiRequest: EMPTY, buffers: [], packageFiles: [] };
  fields(r, (no, wt) => {
    if (no === 1) {
      expect(wt, WIRE_VARINT, 'Request', no);
      request.requestId = r.uint64();
    } else if (no === 2) {
      expect(wt, WIRE_DELIMITED, 'Request', no);
      request.ffiRequest = r.bytes();
    } else if (no === 3) {
      expect(wt, WIRE_DELIMITED, 'Request', no);
      request.buffers.push(nested(r, readBuffer));
    } else if (no === 4) {
      expect(wt, WIRE_DELIMITED, 'Request', no);
      request.packageFiles.push(fromBinary(PackageFileSchema, r.bytes()));
    } else return false;
    return true;
  });
  return request;
}

function readDropHandles(r: WireReader, into?: DropHandles): DropHandles {
  const drop: DropHandles = into ?? { $typeName: 'livekit.ffi_broker.v1.DropHandles', handles: [], requestId: 0n };
  fields(r, (no, wt) => {
    if (no === 1 && wt === WIRE_DELIMITED) {
      nested(r, (packed) => {
        while (packed.pos < packed.end) drop.handles.push(packed.uint64());
      });
    } else if (no === 1) {
      expect(wt, WIRE_VARINT, 'DropHandles', no);
      drop.handles.push(r.uint64());
    } else if (no === 2) {
      expect(wt, WIRE_VARINT, 'DropHandles', no);
      drop.requestId = r.uint64();
    } else return false;
    return true;
  });
  return drop;
}

function readClientMessage(r: WireReader): ClientMessage {
  const message: ClientMessage = { $typeName: 'livekit.ffi_broker.v1.ClientMessage', message: { case: undefined } };
  fields(r, (no, wt) => {
    if (no > 4) return false;
    expect(wt, WIRE_DELIMITED, 'ClientMessage', no);
    const slot = message.message;
    if (no === 1) message.message = { case: 'hello', value: slot.case === 'hello' ? mergeFromBinary(HelloSchema, slot.value, r.bytes()) : fromBinary(HelloSchema, r.bytes()) };
    else if (no === 2) message.message = { case: 'request', value: nested(r, (m) => readRequest(m, slot.case === 'request' ? slot.value : undefined)) };
    else if (no === 3) message.message = { case: 'dropHandles', value: nested(r, (m) => readDropHandles(m, slot.case === 'dropHandles' ? slot.value : undefined)) };
    else {
      const messages = slot.case === 'batch' ? slot.value.messages : [];
      nested(r, (batch) =>
        fields(batch, (item, itemWt) => {
          if (item !== 1) return false;
          expect(itemWt, WIRE_DELIMITED, 'ClientBatch', item);
          messages.push(nested(batch, readClientMessage));
          return true;
        }),
      );
      message.message = { case: 'batch', value: { $typeName: 'livekit.ffi_broker.v1.ClientBatch', messages } };
    }
    return true;
  });
  return message;
}

/** `bytes` read as fromBinary(ClientMessageSchema, bytes) reads it, less unknown fields. */
export function decodeClientMessage(bytes: Uint8Array): ClientMessage {
  return readClientMessage(new WireReader(bytes));
}
