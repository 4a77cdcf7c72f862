// livekit.proto messages (protobuf-es v1 objects) serialized in one pass into one Buffer, without
// unknown fields. protobuf-es v1's toBinary walks every field a type declares (FfiRequest's oneof
// has over a hundred) and joins a chunk per nested message; this encoder looks only at the set
// oneof member and writes each byte once, after a size pass (bench/codecs.ts has the figures).
// Its output is byte for byte toBinary({ writeUnknownFields: false }) (test/wire_encoding.test.ts),
// and a missing required field throws as toBinary does. Building an encoder for a type throws on
// any feature of the schema it does not write (packed or delimited fields, implicit presence,
// non-string map keys), so a schema that starts using one fails loudly, not wrongly.
import { SizePlan, WIRE_DELIMITED, WireWriter, varint64Size, varintSize } from '../proto/wire_writer.js';
import { ROOT_TYPES, type SchemaField, type SchemaMessage, type SchemaType } from './livekit_schema.js';
import { BOOL, BYTES, DOUBLE, FIXED32, FIXED64, FLOAT, INT32, INT64, SFIXED32, SFIXED64, SINT32, SINT64, STRING, UINT32, UINT64, wireTypeOf } from './livekit_wire.js';

interface FieldCodec {
  no: number;
  name: string;
  localName: string;
  kind: 'scalar' | 'message' | 'map';
  /** Scalar type; enums are INT32. For a map, the value's scalar type (or 0 for a message value). */
  scalar: number;
  repeated: boolean;
  required: boolean;
  tag: number;
  tagSize: number;
  /** The message codec of a message field or of a map's message value, built on first use. */
  type: () => TypeCodec;
}

interface TypeCodec {
  typeName: string;
  /** Fields outside oneofs, by number. */
  fields: FieldCodec[];
  /** Oneof local name → member local name → member. */
  oneofs: [string, Map<string, FieldCodec>][];
  /** Whether the set oneof members must be sorted among the other fields to keep field-number order. */
  interleaved: boolean;
}

const codecs = new Map<string, TypeCodec>();

function codecOf(type: SchemaType): TypeCodec {
  const known = codecs.get(type.typeName);
  if (known !== undefined) return known;
  const codec: TypeCodec = { typeName: type.typeName, fields: [], oneofs: [], interleaved: false };
  codecs.set(type.typeName, codec); // before fields: the schema has cycles
  const unsupported = (f: SchemaField, what: string) => new Error(`livekit_encoding: ${type.typeName}.${f.name} is ${what}, which this encoder does not write`);
  const oneofs = new Map<string, Map<string, FieldCodec>>();
  for (const f of [...(type.fields.list())].sort((a, b) => a.no - b.no)) {
    if (f.packed || f.delimited || (f.L ?? 0) > 0) throw unsupported(f, 'packed, delimited or a 64-bit integer as string');
    if (!f.repeated && f.kind !== 'map' && f.oneof === undefined && !f.opt && !f.req) throw unsupported(f, 'a field with implicit presence');
    if (f.kind === 'map' && f.K !== STRING) throw unsupported(f, 'a map with non-string keys');
    const kind = f.kind === 'enum' ? 'scalar' : f.kind;
    const scalar = f.kind === 'scalar' ? (f.T as number) : f.kind === 'enum' ? INT32 : f.kind === 'map' ? (f.V!.kind === 'message' ? 0 : f.V!.kind === 'enum' ? INT32 : (f.V!.T as number)) : 0;
    const wire = kind === 'scalar' ? wireTypeOf(scalar) : WIRE_DELIMITED;
    const tag = (f.no << 3) | wire;
    const target = f.kind === 'map' ? f.V!.T : f.T;
    let resolved: TypeCodec | undefined;
    const field: FieldCodec = {
      no: f.no,
      name: f.name,
      localName: f.localName,
      kind,
      scalar,
      repeated: f.repeated,
      required: f.req === true,
      tag,
      tagSize: varintSize(tag),
      type: () => (resolved ??= codecOf(target as SchemaType)),
    };
    if (f.oneof === undefined) {
      codec.fields.push(field);
      continue;
    }
    let members = oneofs.get(f.oneof.localName);
    if (members === undefined) oneofs.set(f.oneof.localName, (members = new Map()));
    members.set(f.localName, field);
  }
  codec.oneofs = [...oneofs];
  // toBinary writes in field-number order; without interleaving, "fields, then each oneof" is that order.
  const ranges = codec.oneofs.map(([, m]) => [Math.min(...[...m.values()].map((f) => f.no)), Math.max(...[...m.values()].map((f) => f.no))] as const);
  const lastField = codec.fields.at(-1)?.no ?? 0;
  codec.interleaved = ranges.some(([lo], i) => lo < lastField || (i > 0 && lo < ranges[i - 1]![1]));
  return codec;
}

const int64 = (v: unknown) => (typeof v === 'bigint' ? v : BigInt(v as number | string));
const zigzag32 = (v: number) => ((v << 1) ^ (v >> 31)) >>> 0;
const zigzag64 = (v: bigint) => BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));

/** The bytes of one scalar value without its tag; strings' UTF-8 lengths go into the plan. */
function scalarSize(scalar: number, v: unknown, plan: SizePlan): number {
  switch (scalar) {
    case DOUBLE:
    case FIXED64:
    case SFIXED64:
      return 8;
    case FLOAT:
    case FIXED32:
    case SFIXED32:
      return 4;
    case BOOL:
      return 1;
    case INT32:
      return (v as number) < 0 ? 10 : varintSize(v as number);
    case UINT32:
      return varintSize(v as number);
    case SINT32:
      return varintSize(zigzag32(v as number));
    case INT64:
    case UINT64:
      return varint64Size(int64(v));
    case SINT64:
      return varint64Size(zigzag64(int64(v)));
    case STRING: {
      const length = Buffer.byteLength(v as string, 'utf8');
      plan.sizes.push(length);
      return varintSize(length) + length;
    }
    case BYTES:
      return varintSize((v as Uint8Array).length) + (v as Uint8Array).length;
  }
  throw new Error(`livekit_encoding: scalar type ${scalar}`);
}

function writeScalar(w: WireWriter, scalar: number, v: unknown, plan: SizePlan): void {
  switch (scalar) {
    case DOUBLE:
      return w.double(v as number);
    case FLOAT:
      return w.float(v as number);
    case FIXED64:
    case SFIXED64:
      return w.fixed64(int64(v));
    case FIXED32:
      return w.fixed32(v as number);
    case SFIXED32:
      return w.sfixed32(v as number);
    case BOOL:
      return w.byte(v ? 1 : 0);
    case INT32:
      return (v as number) < 0 ? w.varint64(BigInt(v as number)) : w.varint(v as number);
    case UINT32:
      return w.varint(v as number);
    case SINT32:
      return w.varint(zigzag32(v as number));
    case INT64:
    case UINT64:
      return w.varint64(int64(v));
    case SINT64:
      return w.varint64(zigzag64(int64(v)));
    case STRING: {
      const length = plan.take();
      w.varint(length);
      return w.utf8(v as string, length);
    }
    case BYTES:
      w.varint((v as Uint8Array).length);
      return w.raw(v as Uint8Array);
  }
}

/** The set fields of `m`, in field-number order: each with its value. */
function setFields(m: SchemaMessage, codec: TypeCodec, out: [FieldCodec, unknown][]): void {
  for (const f of codec.fields) {
    const v = m[f.localName];
    if (v === undefined || (f.repeated && (v as unknown[]).length === 0) || (f.kind === 'map' && Object.keys(v as object).length === 0)) {
      if (f.required) throw new Error(`cannot encode field ${codec.typeName}.${f.name} to binary: required field not set`);
      continue;
    }
    out.push([f, v]);
  }
  for (const [oneof, members] of codec.oneofs) {
    const slot = m[oneof] as { case?: string; value?: unknown } | undefined;
    const f = slot?.case === undefined ? undefined : members.get(slot.case);
    if (f !== undefined && slot!.value !== undefined) out.push([f, slot!.value]);
  }
  if (codec.interleaved) out.sort((a, b) => a[0].no - b[0].no);
}

function fieldSize(f: FieldCodec, v: unknown, plan: SizePlan): number {
  if (f.kind === 'scalar') {
    if (!f.repeated) return f.tagSize + scalarSize(f.scalar, v, plan);
    let size = 0;
    for (const item of v as unknown[]) size += f.tagSize + scalarSize(f.scalar, item, plan);
    return size;
  }
  if (f.kind === 'message') {
    if (!f.repeated) return f.tagSize + nestedSize(v as SchemaMessage, f.type(), plan);
    let size = 0;
    for (const item of v as SchemaMessage[]) size += f.tagSize + nestedSize(item, f.type(), plan);
    return size;
  }
  let size = 0;
  for (const [key, value] of Object.entries(v as Record<string, unknown>)) {
    const at = plan.reserve();
    const entry = 1 + scalarSize(STRING, key, plan) + 1 + (f.scalar === 0 ? nestedSize(value as SchemaMessage, f.type(), plan) : scalarSize(f.scalar, value, plan));
    plan.sizes[at] = entry;
    size += f.tagSize + varintSize(entry) + entry;
  }
  return size;
}

/** A nested message's length prefix and content. */
function nestedSize(m: SchemaMessage, codec: TypeCodec, plan: SizePlan): number {
  const at = plan.reserve();
  const size = contentSize(m, codec, plan);
  plan.sizes[at] = size;
  return varintSize(size) + size;
}

function contentSize(m: SchemaMessage, codec: TypeCodec, plan: SizePlan): number {
  const fields: [FieldCodec, unknown][] = [];
  setFields(m, codec, fields);
  let size = 0;
  for (const [f, v] of fields) size += fieldSize(f, v, plan);
  return size;
}

function writeField(w: WireWriter, f: FieldCodec, v: unknown, plan: SizePlan): void {
  const items = f.kind === 'map' ? Object.entries(v as Record<string, unknown>) : f.repeated ? (v as unknown[]) : [v];
  for (const item of items) {
    w.varint(f.tag);
    if (f.kind === 'scalar') {
      writeScalar(w, f.scalar, item, plan);
    } else if (f.kind === 'message') {
      w.varint(plan.take());
      writeContent(w, item as SchemaMessage, f.type(), plan);
    } else {
      const [key, value] = item as [string, unknown];
      w.varint(plan.take());
      w.byte((1 << 3) | WIRE_DELIMITED);
      writeScalar(w, STRING, key, plan);
      if (f.scalar === 0) {
        w.byte((2 << 3) | WIRE_DELIMITED);
        w.varint(plan.take());
        writeContent(w, value as SchemaMessage, f.type(), plan);
      } else {
        w.byte((2 << 3) | wireTypeOf(f.scalar));
        writeScalar(w, f.scalar, value, plan);
      }
    }
  }
}

function writeContent(w: WireWriter, m: SchemaMessage, codec: TypeCodec, plan: SizePlan): void {
  const fields: [FieldCodec, unknown][] = [];
  setFields(m, codec, fields);
  for (const [f, v] of fields) writeField(w, f, v, plan);
}

/** `message` as toBinary({ writeUnknownFields: false }) writes it. */
export function encodeLivekit(message: SchemaMessage): Buffer {
  const codec = codecOf(message.getType());
  const plan = new SizePlan();
  const size = contentSize(message, codec, plan);
  const w = new WireWriter(Buffer.allocUnsafe(size));
  writeContent(w, message, codec, plan);
  if (w.pos !== size) throw new Error(`livekit_encoding: wrote ${w.pos} of ${size} bytes of ${codec.typeName}`);
  return w.out;
}

// Every type reachable from the roots now, so that a schema this encoder cannot write fails at start.
const prepared = new Set<string>();
function prepare(codec: TypeCodec): void {
  if (prepared.has(codec.typeName)) return;
  prepared.add(codec.typeName);
  for (const f of [...codec.fields, ...codec.oneofs.flatMap(([, m]) => [...m.values()])]) if (f.kind === 'message' || (f.kind === 'map' && f.scalar === 0)) prepare(f.type());
}
for (const root of ROOT_TYPES) prepare(codecOf(root));
