// The table of handles the library frees by itself, against the pinned schema, and what the
// registry does with such a handle. The behaviour against the real library and server (a long
// text-stream session, rooms of killed workers) is client/python/tests/test_lifecycle_livekit.py.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FfiEvent, FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { FREED_BY_REQUEST, LAST_EVENTS } from '../broker/handles_freed_by_library.js';
import { HandleRegistry, OWNED_ROOM } from '../broker/handle_registry.js';
import type { SchemaField, SchemaType } from '../broker/livekit_schema.js';

const UINT64 = 4;

function oneofMember(root: SchemaType, kind: string): SchemaType {
  const field = root.fields.list().find((f) => f.oneof?.localName === 'message' && f.localName === kind);
  assert.ok(field?.kind === 'message', `${root.typeName} has no message case ${kind}`);
  return field.T as SchemaType;
}

function handleField(type: SchemaType, localName: string): SchemaField {
  const field = type.fields.list().find((f) => f.localName === localName);
  assert.ok(field?.kind === 'scalar' && field.T === UINT64 && field.name.endsWith('_handle'), `${type.typeName}.${localName} is not a *_handle field`);
  return field;
}

test('every row names a request kind and a handle field of the pinned schema', () => {
  for (const [kind, freed] of Object.entries(FREED_BY_REQUEST)) handleField(oneofMember(FfiRequest as unknown as SchemaType, kind), freed.handle);
  assert.equal(LAST_EVENTS.size, 2);
  for (const [kind, last] of LAST_EVENTS) {
    const event = oneofMember(FfiEvent as unknown as SchemaType, kind);
    handleField(event, last.handle);
    assert.ok(event.fields.list().some((f) => f.oneof?.localName === last.oneof && f.localName === last.last), `${event.typeName} has no ${last.oneof} case ${last.last}`);
  }
});

test('a consumed handle leaves its session; its events reach the session until the last one', () => {
  const registry = new HandleRegistry<{ id: string }>();
  const session = { id: 's' };
  registry.own(session, 1n);
  registry.own(session, 2n);
  registry.own(session, 3n, OWNED_ROOM);
  registry.consume(1n, true);
  registry.consume(2n, false);
  assert.deepEqual([...registry.handlesOf(session)], [3n]);
  assert.equal(registry.owns(session, 1n), false);
  assert.equal(registry.eventOwner(1n), session);
  assert.equal(registry.eventOwner(2n), session, 'events just after a consuming request still reach it');
  registry.lastEvent(1n);
  assert.equal(registry.eventOwner(1n), undefined);
  // Session end: the room apart, consumed handles not to be dropped again.
  assert.deepEqual(registry.forget(session), { rooms: [3n], others: [] });
  assert.equal(registry.eventOwner(2n), undefined);
});
