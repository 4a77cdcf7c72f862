// The pinned livekit.proto schema (protobuf-es v1 classes from @livekit/rtc-ffi-bindings), and a
// plan per message type of what the broker must look at: handles named by requests, handles handed
// out (FfiOwnedHandle), async ids and pointer fields. Walks visit only the fields that can lead to
// one of those, so routing a frame event does not touch the rest of the message.
//
// Deep imports only: the package root loads the native Node-API module, which the broker must not.
import { FfiEvent, FfiRequest, FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';

export { FfiEvent, FfiRequest, FfiResponse };

/** The part of protobuf-es v1's reflection API the broker uses (v1 types are not importable beside v2). */
export interface SchemaField {
  no: number;
  name: string;
  localName: string;
  kind: 'scalar' | 'message' | 'enum' | 'map';
  T: unknown;
  repeated: boolean;
  oneof?: { name: string; localName: string };
  // What the broker's own codecs (livekit_decoding.ts, livekit_encoding.ts) also read.
  /** A map's key scalar type and its value. */
  K?: number;
  V?: { kind: 'scalar' | 'enum' | 'message'; T: unknown };
  packed?: boolean;
  delimited?: boolean;
  /** proto2 required; proto2 optional (explicit presence). */
  req?: boolean;
  opt?: boolean;
  /** 64-bit integers as strings (jstype). */
  L?: number;
}
export interface SchemaType {
  typeName: string;
  fields: { list(): readonly SchemaField[] };
  /** The generated class's prototype: what its messages inherit (getType(), toBinary()...). */
  prototype: object;
}
export type SchemaMessage = Record<string, unknown> & { getType(): SchemaType };

const UINT64 = 4; // protobuf-es ScalarType.UINT64
export const OWNED_HANDLE_TYPE = 'livekit.proto.FfiOwnedHandle';

export interface TypePlan {
  type: SchemaType;
  /** uint64 fields named *_handle: handles a request names. */
  handleRefs: SchemaField[];
  /** async_id (responses, events) or request_async_id (requests). */
  asyncId: SchemaField | undefined;
  /** uint64 fields named *_ptr: addresses in the memory of whoever wrote the message. */
  pointers: SchemaField[];
  /** Message-typed fields whose type can contain any of the above or an FfiOwnedHandle. */
  children: SchemaField[];
  isOwnedHandle: boolean;
}

const plans = new Map<string, TypePlan>();

export function planOf(type: SchemaType): TypePlan {
  let plan = plans.get(type.typeName);
  if (plan !== undefined) return plan;
  plan = { type, handleRefs: [], asyncId: undefined, pointers: [], children: [], isOwnedHandle: type.typeName === OWNED_HANDLE_TYPE };
  plans.set(type.typeName, plan); // before recursing: the schema has cycles
  for (const field of type.fields.list()) {
    if (field.kind === 'scalar' && field.T === UINT64) {
      if (field.name.endsWith('_handle')) plan.handleRefs.push(field);
      else if (field.name.endsWith('_ptr')) plan.pointers.push(field);
      else if (field.name === 'async_id' || field.name === 'request_async_id') plan.asyncId = field;
    } else if (field.kind === 'message') {
      plan.children.push(field);
    }
  }
  for (const field of plan.children) planOf(field.T as SchemaType);
  return plan;
}

// Whether a type can lead to anything the broker looks at. The schema has cycles, so this is a
// fixed point over every planned type, computed once when the roots are planned below.
const relevance = new Map<string, boolean>();
function computeRelevance(): void {
  for (const plan of plans.values()) {
    relevance.set(plan.type.typeName, plan.isOwnedHandle || plan.handleRefs.length > 0 || plan.pointers.length > 0 || plan.asyncId !== undefined);
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const plan of plans.values()) {
      if (relevance.get(plan.type.typeName)) continue;
      if (plan.children.some((f) => relevance.get((f.T as SchemaType).typeName))) {
        relevance.set(plan.type.typeName, true);
        changed = true;
      }
    }
  }
}
const relevant = (type: SchemaType): boolean => relevance.get(type.typeName) ?? false;
/** Whether walk() descends into messages of this type (it can lead to a handle, async id or pointer). */
export const isRelevant = (typeName: string): boolean => relevance.get(typeName) ?? false;

// Typed as the part of v1's MessageType that SchemaType describes.
export const ROOT_TYPES = [FfiRequest, FfiResponse, FfiEvent] as unknown as SchemaType[];
export const [FFI_REQUEST, FFI_RESPONSE, FFI_EVENT] = ROOT_TYPES as [SchemaType, SchemaType, SchemaType];
for (const root of ROOT_TYPES) planOf(root);
computeRelevance();

/** Every message type reachable from the roots, by full name. */
export function typeByName(typeName: string): SchemaType | undefined {
  return plans.get(typeName)?.type;
}

/** The TypeScript name of `type`'s field `protoName` (as a table names it); throws naming `table`. */
export function localFieldName(type: SchemaType, protoName: string, table: string): string {
  const field = type.fields.list().find((f) => f.name === protoName);
  if (field === undefined) throw new Error(`${table}: ${type.typeName} has no field ${protoName}`);
  return field.localName;
}

export function fieldValue(message: SchemaMessage, field: SchemaField): unknown {
  if (field.oneof !== undefined) {
    const slot = message[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
    return slot?.case === field.localName ? slot.value : undefined;
  }
  return message[field.localName];
}

export function setFieldValue(message: SchemaMessage, field: SchemaField, value: unknown): void {
  if (field.oneof !== undefined) message[field.oneof.localName] = { case: field.localName, value };
  else message[field.localName] = value;
}

export interface Visitor {
  handleRef?(owner: SchemaMessage, field: SchemaField, value: bigint): void;
  asyncId?(owner: SchemaMessage, field: SchemaField, value: bigint): void;
  pointer?(owner: SchemaMessage, field: SchemaField, value: bigint, ancestors: readonly SchemaMessage[]): void;
  /** `container` is the Owned* message holding the handle, e.g. OwnedAudioFrameBuffer. */
  ownedHandle?(id: bigint, container: SchemaMessage | undefined): void;
}

/** Visits, depth first in field order, every handle, async id and pointer under `message`. */
export function walk(message: SchemaMessage, visitor: Visitor, ancestors: SchemaMessage[] = []): void {
  const plan = planOf(message.getType());
  if (plan.isOwnedHandle) {
    const id = message.id as bigint | undefined;
    if (id !== undefined) visitor.ownedHandle?.(id, ancestors[ancestors.length - 1]);
    return;
  }
  for (const field of plan.handleRefs) {
    const value = fieldValue(message, field);
    if (typeof value === 'bigint') visitor.handleRef?.(message, field, value);
  }
  if (plan.asyncId !== undefined) {
    const value = fieldValue(message, plan.asyncId);
    if (typeof value === 'bigint') visitor.asyncId?.(message, plan.asyncId, value);
  }
  for (const field of plan.pointers) {
    const value = fieldValue(message, field);
    if (typeof value === 'bigint') visitor.pointer?.(message, field, value, ancestors);
  }
  if (plan.children.length === 0) return;
  ancestors.push(message);
  for (const field of plan.children) {
    if (!relevant(field.T as SchemaType)) continue;
    const value = fieldValue(message, field);
    if (value === undefined) continue;
    if (field.repeated) for (const item of value as SchemaMessage[]) walk(item, visitor, ancestors);
    else walk(value as SchemaMessage, visitor, ancestors);
  }
  ancestors.pop();
}

// The field number of each member of the roots' `message` oneof, by its local name.
const caseNumbers = new Map(ROOT_TYPES.map((root) => [root.typeName, new Map(root.fields.list().map((f) => [f.localName, f.no]))]));

/** The selected request/response/event inside an FfiRequest/FfiResponse/FfiEvent oneof; `no` is its field number. */
export function selected(message: SchemaMessage): { kind: string; no: number; typeName: string; value: SchemaMessage } | undefined {
  const slot = message.message as { case?: string; value?: SchemaMessage } | undefined;
  if (slot?.case === undefined || slot.value === undefined) return undefined;
  const no = caseNumbers.get(message.getType().typeName)?.get(slot.case) ?? 0;
  return { kind: slot.case, no, typeName: slot.value.getType().typeName.replace('livekit.proto.', ''), value: slot.value };
}
