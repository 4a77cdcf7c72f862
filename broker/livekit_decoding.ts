// livekit.proto messages read into protobuf-es v1 objects, without v1's per-field reflection (its
// readMessage looks each tag up, re-dispatches on the field's kind and builds every message with a
// constructor that walks all of the type's members; bench/codecs.ts has the figures). It builds
// the objects v1's fromBinary builds (test/wire_encoding.test.ts compares them on random and
// mutated bytes), except that unknown fields are skipped, not kept (the broker never writes them),
// and that it is stricter where v1 reads past what the bytes declare: a field whose wire type is
// not its type's, or that runs past the end of its message, throws.
import { WireReader } from '../proto/wire_reader.js';
import { WIRE_DELIMITED } from '../proto/wire_writer.js';
import { ROOT_TYPES, type SchemaMessage, type SchemaType } from './livekit_schema.js';
import { BOOL, BYTES, DOUBLE, FIXED32, FIXED64, FLOAT, INT32, INT64, SFIXED32, SFIXED64, SINT32, SINT64, STRING, UINT32, UINT64, wireTypeOf } from './livekit_wire.js';

interface FieldReader {
  localName: string;
  oneof: string | undefined;
  kind: 'scalar' | 'message' | 'map';
  /** Scalar type (enums: INT32); a map's value scalar type, 0 for a message value. */
  scalar: number;
  repeated: boolean;
  /** The message type of a message field or a map's message value. */
  type: SchemaType | undefined;
  /** Its reader, resolved on first use (the schema has cycles). */
  typeReader?: TypeReader;
  /** A map's enum value: the enum's first value, its default. */
  enumZero: number;
}

interface TypeReader {
  prototype: object;
  byNumber: Map<number, FieldReader>;
  /** What a v1 constructor sets: [] for lists, {case: undefined} for oneofs, {} for maps. */
  lists: string[];
  oneofs: string[];
  maps: string[];
}

const readers = new Map<string, TypeReader>();

function readerOf(type: SchemaType): TypeReader {
  const known = readers.get(type.typeName);
  if (known !== undefined) return known;
  const reader: TypeReader = { prototype: type.prototype, byNumber: new Map(), lists: [], oneofs: [], maps: [] };
  readers.set(type.typeName, reader);
  for (const f of type.fields.list()) {
    if (f.delimited || (f.L ?? 0) > 0 || (f.kind === 'message' && (f.T as { fieldWrapper?: unknown }).fieldWrapper !== undefined)) {
      throw new Error(`livekit_decoding: ${type.typeName}.${f.name} is delimited, a wrapper or a 64-bit integer as string, which this decoder does not read`);
    }
    if (f.kind === 'map' && f.K !== STRING) throw new Error(`livekit_decoding: ${type.typeName}.${f.name} is a map with non-string keys, which this decoder does not read`);
    const value = f.kind === 'map' ? f.V! : { kind: f.kind, T: f.T };
    reader.byNumber.set(f.no, {
      localName: f.localName,
      oneof: f.oneof?.localName,
      kind: f.kind === 'enum' ? 'scalar' : f.kind,
      scalar: value.kind === 'scalar' ? (value.T as number) : value.kind === 'enum' ? INT32 : 0,
      repeated: f.repeated,
      type: value.kind === 'message' ? (value.T as SchemaType) : undefined,
      enumZero: value.kind === 'enum' ? (value.T as { values: { no: number }[] }).values[0]!.no : 0,
    });
    if (f.oneof !== undefined) {
      if (!reader.oneofs.includes(f.oneof.localName)) reader.oneofs.push(f.oneof.localName);
    } else if (f.repeated) reader.lists.push(f.localName);
    else if (f.kind === 'map') reader.maps.push(f.localName);
  }
  return reader;
}

const readerOfField = (f: FieldReader): TypeReader => (f.typeReader ??= readerOf(f.type!));

function newMessage(reader: TypeReader): SchemaMessage {
  const m = Object.create(reader.prototype) as SchemaMessage;
  for (const name of reader.lists) m[name] = [];
  for (const name of reader.oneofs) m[name] = { case: undefined };
  for (const name of reader.maps) m[name] = {};
  return m;
}

function readScalar(r: WireReader, scalar: number): unknown {
  switch (scalar) {
    case DOUBLE:
      return r.double();
    case FLOAT:
      return r.float();
    case INT64:
      return r.int64();
    case UINT64:
      return r.uint64();
    case INT32:
      return r.int32();
    case FIXED64:
      return r.fixed64();
    case FIXED32:
      return r.fixed32();
    case BOOL:
      return r.bool();
    case STRING:
      return r.string();
    case BYTES:
      return r.bytes();
    case UINT32:
      return r.uint32();
    case SFIXED32:
      return r.sfixed32();
    case SFIXED64:
      return r.sfixed64();
    case SINT32:
      return r.sint32();
    case SINT64:
      return r.sint64();
  }
  throw new Error(`livekit_decoding: scalar type ${scalar}`);
}

const scalarZero = (scalar: number): unknown =>
  scalar === STRING ? '' : scalar === BOOL ? false : scalar === BYTES ? new Uint8Array(0) : [INT64, UINT64, FIXED64, SFIXED64, SINT64].includes(scalar) ? 0n : 0;

/** Reads a nested message's fields into `m`, with the reader bounded by the nested message's end. */
function readNested(r: WireReader, m: SchemaMessage, reader: TypeReader): SchemaMessage {
  const end = r.delimitedEnd();
  const outer = r.end;
  r.end = end;
  readFields(r, m, reader);
  r.end = outer;
  return m;
}

function wireError(f: FieldReader, wireType: number): Error {
  return new Error(`livekit_decoding: field ${f.localName} has wire type ${wireType}`);
}

function readMapEntry(r: WireReader, f: FieldReader, map: Record<string, unknown>): void {
  const end = r.delimitedEnd();
  const outer = r.end;
  r.end = end;
  let key: string | undefined;
  let value: unknown;
  while (r.pos < end) {
    const tag = r.uint32();
    const no = tag >>> 3;
    const wireType = tag & 7;
    if (no === 1 && wireType === WIRE_DELIMITED) key = r.string();
    else if (no === 2 && f.type !== undefined && wireType === WIRE_DELIMITED) value = readNested(r, newMessage(readerOfField(f)), readerOfField(f));
    else if (no === 2 && f.type === undefined && wireType === wireTypeOf(f.scalar)) value = readScalar(r, f.scalar);
    else if (no === 1 || no === 2) throw wireError(f, wireType);
    else r.skip(wireType);
  }
  r.end = outer;
  map[key ?? ''] = value ?? (f.type !== undefined ? newMessage(readerOfField(f)) : f.enumZero !== 0 ? f.enumZero : scalarZero(f.scalar));
}

function readFields(r: WireReader, m: SchemaMessage, reader: TypeReader): void {
  while (r.pos < r.end) {
    const tag = r.uint32();
    const no = tag >>> 3;
    const wireType = tag & 7;
    if (no === 0 || wireType > 5) throw new Error(`illegal tag: field no ${no} wire type ${wireType}`);
    const f = reader.byNumber.get(no);
    if (f === undefined) {
      r.skip(wireType);
      continue;
    }
    let target: Record<string, unknown> = m;
    let name = f.localName;
    if (f.oneof !== undefined) {
      // As v1: a member read replaces another member; the same member again merges (messages).
      target = m[f.oneof] as Record<string, unknown>;
      if (target.case !== f.localName) delete target.value;
      target.case = f.localName;
      name = 'value';
    }
    if (f.kind === 'scalar') {
      const expected = wireTypeOf(f.scalar);
      if (f.repeated && wireType === WIRE_DELIMITED && expected !== WIRE_DELIMITED) {
        const list = target[name] as unknown[];
        const end = r.delimitedEnd();
        const outer = r.end;
        r.end = end;
        while (r.pos < end) list.push(readScalar(r, f.scalar));
        r.end = outer;
        continue;
      }
      if (wireType !== expected) throw wireError(f, wireType);
      if (f.repeated) (target[name] as unknown[]).push(readScalar(r, f.scalar));
      else target[name] = readScalar(r, f.scalar);
    } else if (f.kind === 'message') {
      if (wireType !== WIRE_DELIMITED) throw wireError(f, wireType);
      const type = readerOfField(f);
      if (f.repeated) (target[name] as unknown[]).push(readNested(r, newMessage(type), type));
      else target[name] = readNested(r, (target[name] as SchemaMessage | undefined) ?? newMessage(type), type);
    } else {
      if (wireType !== WIRE_DELIMITED) throw wireError(f, wireType);
      readMapEntry(r, f, target[name] as Record<string, unknown>);
    }
  }
}

/** `bytes` read as `type.fromBinary(bytes)` reads it, less unknown fields. */
export function decodeLivekit(type: SchemaType, bytes: Uint8Array): SchemaMessage {
  const reader = readerOf(type);
  const m = newMessage(reader);
  readFields(new WireReader(bytes), m, reader);
  return m;
}

// Every type reachable from the roots now, so that a schema this decoder cannot read fails at start.
const prepared = new Set<string>();
function prepare(type: SchemaType): void {
  if (prepared.has(type.typeName)) return;
  prepared.add(type.typeName);
  for (const f of readerOf(type).byNumber.values()) if (f.type !== undefined) prepare(f.type);
}
for (const root of ROOT_TYPES) prepare(root);
