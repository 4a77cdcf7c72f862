// ServerMessage serialized in one pass into one Buffer: the sizes of every nested message are
// computed first, then each byte is written once at its final place. protobuf-es's toBinary
// instead serializes each nested message into its own chunk and joins the chunks at every level,
// so a frame's bytes inside Buffer → Event → EventBatch → ServerMessage were copied four times.
// Only the messages on the media path (Response, EventBatch, Event, Buffer, LaneRef, ServerBatch)
// are written here; the rare ones (Welcome, Notice, Error) are embedded from toBinary. The output
// is byte for byte what toBinary writes (test/wire_encoding.test.ts), and loading this module
// fails if the schema of those messages gained, lost or retyped a field.
import { ScalarType, toBinary, type DescMessage, type Message } from '@bufbuild/protobuf';
import {
  BufferSchema,
  ErrorSchema,
  EventBatchSchema,
  EventSchema,
  LaneRefSchema,
  NoticeSchema,
  ResponseSchema,
  ServerBatchSchema,
  ServerMessageSchema,
  WelcomeSchema,
  type Buffer as WireBuffer,
  type Event,
  type Response,
  type ServerMessage,
} from './gen/ffi_broker_pb.js';
import { SizePlan, WireWriter, delimitedSize, varint64Size, varintSize } from './wire_writer.js';

/** The fields written here, as `name:number:type`; checked against the generated schema at load. */
const WRITTEN: [DescMessage, string[]][] = [
  [ServerMessageSchema, ['welcome:1:message', 'response:2:message', 'events:3:message', 'notice:4:message', 'batch:5:message']],
  [ServerBatchSchema, ['messages:1:list']],
  [ResponseSchema, ['request_id:1:uint64', 'ffi_response:2:bytes', 'buffers:3:list', 'error:4:message']],
  [EventBatchSchema, ['events:1:list']],
  [EventSchema, ['seq:1:uint64', 'ffi_event:2:bytes', 'buffers:3:list']],
  [BufferSchema, ['ptr:1:uint64', 'data:2:bytes', 'lane:3:message']],
  [LaneRefSchema, ['region:1:uint32', 'offset:2:uint64', 'length:3:uint64', 'release:4:uint64']],
];
for (const [schema, expected] of WRITTEN) {
  const actual = schema.fields.map((f) => `${f.name}:${f.number}:${f.fieldKind === 'scalar' ? ScalarType[f.scalar].toLowerCase() : f.fieldKind}`);
  if (actual.join() !== expected.join()) throw new Error(`server_message_encoding: ${schema.typeName} is now {${actual.join(', ')}}; update this encoder (it writes {${expected.join(', ')}})`);
}

// Tags (field number << 3 | wire type): one byte each for fields 1 to 15.
const VARINT = [0, 0x08, 0x10, 0x18, 0x20];
const DELIMITED = [0, 0x0a, 0x12, 0x1a, 0x22, 0x2a];

// A message carrying unknown fields (none the broker builds does) goes through toBinary, which keeps them.
const UNKNOWN = new Error('unknown fields');
function known(m: Message): void {
  if ((m.$unknown?.length ?? 0) > 0) throw UNKNOWN;
}

interface Plan {
  sizes: SizePlan;
  /** The rare submessages, serialized by toBinary in the size pass. */
  embedded: Uint8Array[];
}

const uint64Size = (v: bigint) => (v === 0n ? 0 : 1 + varint64Size(v));
const bytesSize = (b: Uint8Array) => (b.length === 0 ? 0 : delimitedSize(1, b.length));

function embed(plan: Plan, bytes: Uint8Array): number {
  plan.embedded.push(bytes);
  return delimitedSize(1, bytes.length);
}

function buffersSize(buffers: readonly WireBuffer[], plan: Plan): number {
  let total = 0;
  for (const b of buffers) {
    known(b);
    const at = plan.sizes.reserve();
    let size = uint64Size(b.ptr) + bytesSize(b.data);
    const lane = b.lane;
    if (lane !== undefined) {
      known(lane);
      const laneSize = (lane.region === 0 ? 0 : 1 + varintSize(lane.region)) + uint64Size(lane.offset) + uint64Size(lane.length) + uint64Size(lane.release);
      plan.sizes.sizes.push(laneSize);
      size += delimitedSize(1, laneSize);
    }
    plan.sizes.sizes[at] = size;
    total += delimitedSize(1, size);
  }
  return total;
}

function responseSize(r: Response, plan: Plan): number {
  known(r);
  return uint64Size(r.requestId) + bytesSize(r.ffiResponse) + buffersSize(r.buffers, plan) + (r.error === undefined ? 0 : embed(plan, toBinary(ErrorSchema, r.error)));
}

function eventSize(e: Event, plan: Plan): number {
  known(e);
  const at = plan.sizes.reserve();
  const size = uint64Size(e.seq) + bytesSize(e.ffiEvent) + buffersSize(e.buffers, plan);
  plan.sizes.sizes[at] = size;
  return delimitedSize(1, size);
}

// A ServerMessage's entry in the plan is the size of its oneof's message, NO_CASE when none is set.
const NO_CASE = -1;
const contentSize = (inner: number) => (inner === NO_CASE ? 0 : delimitedSize(1, inner));

/** The size of `m`'s content (without its own tag and length, which a batch writes). */
function serverMessageSize(m: ServerMessage, plan: Plan): number {
  known(m);
  const at = plan.sizes.reserve();
  const slot = m.message;
  let inner = 0;
  switch (slot.case) {
    case undefined:
      plan.sizes.sizes[at] = NO_CASE;
      return 0;
    case 'welcome':
      plan.embedded.push(toBinary(WelcomeSchema, slot.value));
      inner = plan.embedded.at(-1)!.length;
      break;
    case 'notice':
      plan.embedded.push(toBinary(NoticeSchema, slot.value));
      inner = plan.embedded.at(-1)!.length;
      break;
    case 'response':
      inner = responseSize(slot.value, plan);
      break;
    case 'events':
      known(slot.value);
      for (const e of slot.value.events) inner += eventSize(e, plan);
      break;
    case 'batch':
      known(slot.value);
      for (const item of slot.value.messages) inner += delimitedSize(1, serverMessageSize(item, plan));
      break;
  }
  plan.sizes.sizes[at] = inner;
  return contentSize(inner);
}

function writeUint64(w: WireWriter, field: number, v: bigint): void {
  if (v === 0n) return;
  w.byte(VARINT[field]!);
  w.varint64(v);
}

function writeBytes(w: WireWriter, field: number, b: Uint8Array): void {
  if (b.length > 0) w.delimited(DELIMITED[field]!, b);
}

function writeBuffers(w: WireWriter, field: number, buffers: readonly WireBuffer[], plan: Plan): void {
  for (const b of buffers) {
    w.byte(DELIMITED[field]!);
    w.varint(plan.sizes.take());
    writeUint64(w, 1, b.ptr);
    writeBytes(w, 2, b.data);
    const lane = b.lane;
    if (lane === undefined) continue;
    w.byte(DELIMITED[3]!);
    w.varint(plan.sizes.take());
    if (lane.region !== 0) {
      w.byte(VARINT[1]!);
      w.varint(lane.region);
    }
    writeUint64(w, 2, lane.offset);
    writeUint64(w, 3, lane.length);
    writeUint64(w, 4, lane.release);
  }
}

/** Writes `m`'s content; when it is nested, its tag and length were written by the caller. */
function writeServerMessage(w: WireWriter, m: ServerMessage, plan: Plan, embedded: { next: number }): void {
  const inner = plan.sizes.take();
  const slot = m.message;
  switch (slot.case) {
    case undefined:
      return;
    case 'welcome':
    case 'notice':
      w.delimited(DELIMITED[slot.case === 'welcome' ? 1 : 4]!, plan.embedded[embedded.next++]!);
      return;
    case 'response': {
      const r = slot.value;
      w.byte(DELIMITED[2]!);
      w.varint(inner);
      writeUint64(w, 1, r.requestId);
      writeBytes(w, 2, r.ffiResponse);
      writeBuffers(w, 3, r.buffers, plan);
      if (r.error !== undefined) w.delimited(DELIMITED[4]!, plan.embedded[embedded.next++]!);
      return;
    }
    case 'events':
      w.byte(DELIMITED[3]!);
      w.varint(inner);
      for (const e of slot.value.events) {
        w.byte(DELIMITED[1]!);
        w.varint(plan.sizes.take());
        writeUint64(w, 1, e.seq);
        writeBytes(w, 2, e.ffiEvent);
        writeBuffers(w, 3, e.buffers, plan);
      }
      return;
    case 'batch':
      w.byte(DELIMITED[5]!);
      w.varint(inner);
      for (const item of slot.value.messages) {
        w.byte(DELIMITED[1]!);
        w.varint(contentSize(plan.sizes.peek()));
        writeServerMessage(w, item, plan, embedded);
      }
      return;
  }
}

/** `message` serialized as toBinary(ServerMessageSchema, message) would, in one Buffer. */
export function encodeServerMessage(message: ServerMessage): Buffer {
  const plan: Plan = { sizes: new SizePlan(), embedded: [] };
  let size: number;
  try {
    size = serverMessageSize(message, plan);
  } catch (err) {
    if (err !== UNKNOWN) throw err;
    const bytes = toBinary(ServerMessageSchema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  }
  const w = new WireWriter(Buffer.allocUnsafe(size));
  writeServerMessage(w, message, plan, { next: 0 });
  if (w.pos !== size) throw new Error(`server_message_encoding: wrote ${w.pos} of ${size} bytes`);
  return w.out;
}
