// ParticipantInfo in the numbering of liblivekit_ffi before rust-sdks #978 (0.12.51), which the
// Python SDK before 1.1.4 was generated from: #978 inserted `state = 4` and `joined_at = 9` and
// shifted the fields after them, so such an SDK reads the broker's ParticipantInfo wrongly (a
// metadata string read as the attributes map: "Wire format was corrupt"). For a bridged session the
// broker rewrites every ParticipantInfo in what it sends it, at the wire level: only the fields on a
// path that can reach a ParticipantInfo are parsed, everything else is copied as it is.
//
// Only events carry one: no FfiRequest nor FfiResponse field leads to a ParticipantInfo (the unit
// test checks this against the schema, so a schema that adds one fails there first).
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { FfiEvent, type SchemaField, type SchemaType } from './livekit_schema.js';

export const PARTICIPANT_INFO = 'livekit.proto.ParticipantInfo';

/**
 * The old field numbers, by field name (rust-sdks participant.proto before #978). Fields of the
 * broker's schema not named here (state, joined_at, client_protocol) did not exist then: dropped.
 */
export const OLD_PARTICIPANT_INFO_FIELDS: Readonly<Record<string, number>> = {
  sid: 1,
  name: 2,
  identity: 3,
  metadata: 4,
  attributes: 5,
  kind: 6,
  disconnect_reason: 7,
  kind_details: 8,
  permission: 9,
};

/** Every message type reachable from `type`, by name. */
function reachable(type: SchemaType, out = new Map<string, SchemaType>()): Map<string, SchemaType> {
  if (out.has(type.typeName)) return out;
  out.set(type.typeName, type);
  for (const field of type.fields.list()) {
    const child = messageTypeOf(field);
    if (child !== undefined) reachable(child, out);
  }
  return out;
}

function messageTypeOf(field: SchemaField): SchemaType | undefined {
  if (field.kind === 'message') return field.T as SchemaType;
  const value = (field as unknown as { V?: { kind: string } }).V;
  if (field.kind === 'map' && value?.kind === 'message') throw new Error(`participant_info_v1: map ${field.name} holds messages, which rewrite() does not walk`);
  return undefined;
}

/**
 * For each type under `root` that can contain a ParticipantInfo: its message fields that can, by
 * number. A fixed point over the reachable types, as the schema has cycles.
 */
export function participantInfoPaths(root: SchemaType): Map<string, Map<number, SchemaType>> {
  const types = reachable(root);
  const leads = new Set([PARTICIPANT_INFO]);
  for (let changed = true; changed; ) {
    changed = false;
    for (const type of types.values()) {
      if (leads.has(type.typeName) || !type.fields.list().some((f) => leads.has(messageTypeOf(f)?.typeName ?? ''))) continue;
      leads.add(type.typeName);
      changed = true;
    }
  }
  const paths = new Map<string, Map<number, SchemaType>>();
  for (const type of types.values()) {
    if (!leads.has(type.typeName) || type.typeName === PARTICIPANT_INFO) continue;
    const fields = type.fields.list().filter((f) => leads.has(messageTypeOf(f)?.typeName ?? ''));
    paths.set(type.typeName, new Map(fields.map((f) => [f.no, messageTypeOf(f)!])));
  }
  return paths;
}

const EVENT = FfiEvent as unknown as SchemaType;
const paths = participantInfoPaths(EVENT);
// Broker's field number → old number (a field absent is dropped).
const toOld = new Map<number, number>();
{
  const info = reachable(EVENT).get(PARTICIPANT_INFO);
  if (info === undefined || paths.size === 0) throw new Error('participant_info_v1: no FfiEvent path leads to livekit.proto.ParticipantInfo');
  const byName = new Map(info.fields.list().map((f) => [f.name, f.no]));
  for (const [name, old] of Object.entries(OLD_PARTICIPANT_INFO_FIELDS)) {
    const no = byName.get(name);
    if (no === undefined) throw new Error(`participant_info_v1: ParticipantInfo has no field ${name}`);
    toOld.set(no, old);
  }
}

/** `bytes` (a message of `type`) with every ParticipantInfo in it renumbered; the same array when it holds none. */
function rewrite(bytes: Uint8Array, type: SchemaType): Uint8Array {
  const isInfo = type.typeName === PARTICIPANT_INFO;
  const children = paths.get(type.typeName);
  if (!isInfo && children === undefined) return bytes;
  const reader = new BinaryReader(bytes);
  const writer = new BinaryWriter();
  let changed = isInfo;
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [no, wireType] = reader.tag();
    const child = children?.get(no);
    if (child !== undefined && wireType === WireType.LengthDelimited) {
      const inner = reader.bytes();
      const out = rewrite(inner, child);
      if (out !== inner) changed = true;
      writer.tag(no, WireType.LengthDelimited).bytes(out);
      continue;
    }
    const valueStart = reader.pos;
    reader.skip(wireType, no);
    if (!isInfo) writer.raw(bytes.subarray(start, reader.pos));
    else {
      const old = toOld.get(no);
      if (old !== undefined) writer.tag(old, wireType).raw(bytes.subarray(valueStart, reader.pos));
    }
  }
  return changed ? writer.finish() : bytes;
}

/** An encoded FfiEvent with every ParticipantInfo in the numbering of SDKs before the renumbering. */
export function eventWithOldParticipantInfo(ffiEvent: Uint8Array): Uint8Array {
  return rewrite(ffiEvent, EVENT);
}
