// Audits the pinned livekit schema (@livekit/rtc-ffi-bindings) against what the broker covers, so
// that a schema upgrade that adds a pointer or handle field fails here instead of corrupting
// memory or leaking a handle across sessions. Walks the descriptors itself, independently of the
// broker's own plans, and then checks the broker's plans against what it found.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { FfiEvent, FfiRequest, FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { OWNED_HANDLE_TYPE, isRelevant, planOf, type SchemaField, type SchemaType } from '../broker/livekit_schema.js';
import { POINTER_TABLE_PATH, pointerField } from '../broker/pointer_fields.js';
import { kindVerdict } from '../broker/request_kinds.js';

const UINT64 = 4;
// Event kinds that name no owner in a field on purpose: logs and panics go to the broker's log, and
// to a session only when their text names its handles (handle_mentions.ts); TrackEvent has no
// fields at all in this schema.
const UNROUTED_EVENT_KINDS = new Set(['logs', 'panic', 'track_event']);

interface Found {
  type: SchemaType;
  field: SchemaField;
  path: string;
}

function audit(root: SchemaType) {
  const pointers: Found[] = [];
  const handles: Found[] = [];
  const owned: Found[] = [];
  const suspicious: string[] = [];
  const seen = new Set<string>();
  const visit = (type: SchemaType, path: string) => {
    if (seen.has(type.typeName)) return;
    seen.add(type.typeName);
    for (const field of type.fields.list()) {
      const where = `${path}.${field.name}`;
      if (/_ptr$/.test(field.name)) {
        if (field.kind !== 'scalar' || field.T !== UINT64 || field.repeated) suspicious.push(`${where}: a pointer field that is not a single uint64`);
        else pointers.push({ type, field, path: where });
      }
      if (/_handles?$/.test(field.name)) {
        if (field.kind !== 'scalar' || field.T !== UINT64 || field.repeated) suspicious.push(`${where}: a handle field that is not a single uint64`);
        else handles.push({ type, field, path: where });
      }
      if (field.kind === 'map') {
        const value = (field as unknown as { V: { kind: string } }).V;
        if (value.kind === 'message') suspicious.push(`${where}: a map of messages, which the broker's walk does not enter`);
      }
      if (field.kind === 'message') {
        const child = field.T as SchemaType;
        if (child.typeName === OWNED_HANDLE_TYPE) owned.push({ type, field, path: where });
        visit(child, where);
      }
    }
  };
  visit(root, root.typeName);
  return { pointers, handles, owned, suspicious };
}

const roots = [FfiRequest, FfiResponse, FfiEvent] as unknown as SchemaType[];
const results = roots.map(audit);

test('every pointer field of the schema is in proto/pointer_fields.json, with a size and a direction', () => {
  const table = JSON.parse(fs.readFileSync(POINTER_TABLE_PATH, 'utf8')) as { fields: { message: string; field: string }[] };
  const inSchema = new Set<string>();
  for (const [i, result] of results.entries()) {
    for (const p of result.pointers) {
      inSchema.add(`${p.type.typeName}.${p.field.name}`);
      const entry = pointerField(p.type.typeName, p.field.name);
      assert.ok(entry, `${p.path} (${p.type.typeName}.${p.field.name}) is missing from ${POINTER_TABLE_PATH}`);
      const direction = i === 0 ? entry.request : entry.output;
      assert.ok(direction, `${p.path}: the table gives no ${i === 0 ? 'request' : 'output'} direction for it`);
      assert.ok(planOf(p.type).pointers.includes(p.field), `${p.path}: the broker's plan does not see it`);
    }
  }
  assert.ok(inSchema.size >= 10, `found ${inSchema.size} pointer fields; the audit must be looking at the schema`);
  for (const entry of table.fields) assert.ok(inSchema.has(`${entry.message}.${entry.field}`), `table entry ${entry.message}.${entry.field} is not a pointer field of the schema`);
});

test('every *_handle field a request names is checked for ownership before the library sees it', () => {
  const requestHandles = results[0]!.handles;
  assert.ok(requestHandles.length >= 40, `found ${requestHandles.length} handle fields in requests`);
  for (const h of requestHandles) {
    assert.ok(planOf(h.type).handleRefs.includes(h.field), `${h.path}: not in the broker's ownership check`);
    assert.ok(isRelevant(h.type.typeName), `${h.path}: the broker's walk does not reach ${h.type.typeName}`);
  }
});

test('every FfiOwnedHandle in a response or event is reached by the walk that gives it an owner', () => {
  for (const result of results.slice(1)) {
    assert.ok(result.owned.length > 10);
    for (const o of result.owned) assert.ok(isRelevant(o.type.typeName), `${o.path}: the broker's walk does not reach ${o.type.typeName}`);
  }
});

test('every event kind names its owner: an async_id or a *_handle at its top level', () => {
  for (const field of (FfiEvent as unknown as SchemaType).fields.list()) {
    if (UNROUTED_EVENT_KINDS.has(field.name)) continue;
    const plan = planOf(field.T as SchemaType);
    assert.ok(plan.asyncId !== undefined || plan.handleRefs.length > 0, `FfiEvent.${field.name} (${(field.T as SchemaType).typeName}) has no async_id and no *_handle: the broker cannot route it`);
  }
});

test('every request kind is either allowed or refused with a reason, decided from the schema', () => {
  for (const field of (FfiRequest as unknown as SchemaType).fields.list()) {
    const verdict = kindVerdict(field.localName, (field.T as SchemaType).typeName);
    if (field.name === 'dispose') assert.ok(verdict, 'DisposeRequest must be refused');
    else assert.equal(verdict, null, `${field.name} is refused: ${verdict?.message}`);
  }
});

test('no field shape the broker does not understand (repeated handles or pointers, maps of messages)', () => {
  assert.deepEqual(results.flatMap((r) => r.suspicious), []);
});
