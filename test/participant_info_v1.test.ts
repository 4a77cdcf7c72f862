// Bridge participant-info-v1 (broker/participant_info_v1.ts): a ParticipantInfo with every field set,
// at every place an FfiEvent can hold one, rewritten by the bridge and decoded with the layout of
// SDKs before the renumbering (built from the rule table with protobuf-es v1, as the bindings are).
// The bridge through a real SDK (livekit 1.0.3) and livekit-server: `python3 scripts/sdk-matrix.py 1.0.3`.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { FfiEvent, FfiRequest, FfiResponse, type SchemaField, type SchemaType } from '../broker/livekit_schema.js';
import { OLD_PARTICIPANT_INFO_FIELDS, PARTICIPANT_INFO, eventWithOldParticipantInfo, participantInfoPaths } from '../broker/participant_info_v1.js';
import { bridgesFor } from '../broker/sdk_bridges.js';

// protobuf-es v1, the one the bindings' classes are made with.
interface V1Message {
  toBinary(): Uint8Array;
  getType(): SchemaType;
  [field: string]: unknown;
}
interface V1Type extends SchemaType {
  new (init?: Record<string, unknown>): V1Message;
  fromBinary(bytes: Uint8Array): V1Message;
}
const { proto2 } = createRequire(require.resolve('@livekit/rtc-ffi-bindings/proto/ffi_pb.js'))('@bufbuild/protobuf') as {
  proto2: { makeMessageType(name: string, fields: () => unknown[]): V1Type };
};

const EVENT = FfiEvent as unknown as V1Type;
const paths = participantInfoPaths(EVENT);
const fieldsOf = (type: SchemaType): readonly SchemaField[] => type.fields.list();
const INFO = [...paths.values()].flatMap((m) => [...m.values()]).find((t) => t.typeName === PARTICIPANT_INFO) as V1Type;

// The old ParticipantInfo: the broker's fields the rule table names, at the table's numbers.
const OLD_INFO = proto2.makeMessageType('old.ParticipantInfo', () =>
  fieldsOf(INFO)
    .filter((f) => OLD_PARTICIPANT_INFO_FIELDS[f.name] !== undefined)
    .map((f) => ({ ...f, no: OLD_PARTICIPANT_INFO_FIELDS[f.name] })),
);

function fullInfo(): V1Message {
  return new INFO({
    sid: 'PA_x1',
    name: 'Alice',
    identity: 'alice',
    state: 2,
    metadata: '{"role":"agent"}',
    attributes: { 'lk.agent.state': 'listening', x: 'y' },
    kind: 4,
    disconnectReason: 3,
    joinedAt: 1_764_000_000_000n,
    kindDetails: [1, 2],
    permission: { canSubscribe: true, canPublish: false, canPublishData: true, canPublishSources: [2, 3], hidden: false, canUpdateMetadata: true, canSubscribeMetrics: false, canManageAgentSession: true },
    clientProtocol: 1,
  });
}

/** Every path (field numbers, FfiEvent first) to a ParticipantInfo, without going round a cycle. */
function everyPath(typeName: string, seen: string[] = []): number[][] {
  if (typeName === PARTICIPANT_INFO) return [[]];
  const children = paths.get(typeName);
  if (children === undefined || seen.includes(typeName)) return [];
  return [...children].flatMap(([no, child]) => everyPath(child.typeName, [...seen, typeName]).map((rest) => [no, ...rest]));
}

/** `inner` wrapped in one length-delimited field per number of `path`, outermost first. */
function wrap(path: number[], inner: Uint8Array): Uint8Array {
  return path.reduceRight((bytes, no) => new BinaryWriter().tag(no, WireType.LengthDelimited).bytes(bytes).finish(), inner);
}

/** A reader of `path` that knows only the path's fields, with the old ParticipantInfo at its end. */
function oldReader(path: number[]): V1Type {
  return path.reduceRight<V1Type>((inner, no, i) => proto2.makeMessageType(`old.Path${path.slice(0, i + 1).join('_')}`, () => [{ no, name: `f${no}`, kind: 'message', T: inner, repeated: true }]), OLD_INFO);
}

function readAlong(message: V1Message, path: number[]): V1Message {
  return path.reduce((m, no) => (m[`f${no}`] as V1Message[])[0]!, message);
}

test('the schema: every ParticipantInfo an FfiEvent can carry is found; no request or response carries one', () => {
  const found = everyPath(EVENT.typeName);
  // participants_updated, participant_connected, and the ConnectCallback's local and remote participants.
  assert.ok(found.length >= 4, JSON.stringify(found));
  assert.equal(participantInfoPaths(FfiRequest as unknown as SchemaType).size, 0, 'a request carries a ParticipantInfo: renumber requests of bridged sessions too');
  assert.equal(participantInfoPaths(FfiResponse as unknown as SchemaType).size, 0, 'a response carries a ParticipantInfo: renumber responses to bridged sessions too');
});

test('the rule table: the old numbers, the fields the renumbering inserted dropped', () => {
  const byName = Object.fromEntries(fieldsOf(OLD_INFO).map((f) => [f.name, f.no]));
  // python-sdks before 1.1.4 (livekit 1.1.3's participant_pb2 descriptor; 1.0.3 stops at disconnect_reason = 7).
  assert.deepEqual(byName, { sid: 1, name: 2, identity: 3, metadata: 4, attributes: 5, kind: 6, disconnect_reason: 7, kind_details: 8, permission: 9 });
  assert.deepEqual(fieldsOf(INFO).filter((f) => OLD_PARTICIPANT_INFO_FIELDS[f.name] === undefined).map((f) => f.name), ['state', 'joined_at', 'client_protocol']);
});

test('every ParticipantInfo of an event, rewritten, decodes in the old layout with every field intact', () => {
  const info = fullInfo();
  const expected = new OLD_INFO({ ...info });
  for (const path of everyPath(EVENT.typeName)) {
    const event = wrap(path, info.toBinary());
    const rewritten = eventWithOldParticipantInfo(event);
    const old = readAlong(oldReader(path).fromBinary(rewritten), path);
    for (const f of fieldsOf(OLD_INFO)) assert.deepEqual(old[f.localName], expected[f.localName], `${path.join('.')}: ${f.name}`);
    assert.equal((old as unknown as { $unknown?: unknown[] }).$unknown, undefined, `${path.join('.')}: fields the old layout lacks are dropped`);
    assert.ok(rewritten.length < event.length);
  }
});

test('events without a ParticipantInfo pass untouched (the same bytes)', () => {
  const events = [
    new EVENT({ message: { case: 'roomEvent', value: { roomHandle: 3n, message: { case: 'participantDisconnected', value: { participantIdentity: 'bob', disconnectReason: 1 } } } } }),
    new EVENT({ message: { case: 'logs', value: { records: [] } } }),
    new EVENT({ message: { case: 'roomEvent', value: { roomHandle: 3n, message: { case: 'participantsUpdated', value: { participants: [] } } } } }),
  ];
  for (const event of events) {
    const bytes = event.toBinary();
    assert.equal(eventWithOldParticipantInfo(bytes), bytes);
  }
});

test('the bridges table: python before 1.1.4 on a library from 0.12.51 gets participant-info-v1', () => {
  const bridged = (version: string, library = '0.12.75') => bridgesFor('python', version, library).includes('participant-info-v1');
  for (const version of ['1.0.3', '1.1.0', '1.1.3']) assert.ok(bridged(version) && bridged(version, '0.12.51'), version);
  for (const version of ['1.1.4', '1.1.5', '1.2.1', '']) assert.ok(!bridged(version), version);
  // 1.0.3's own library (0.12.19) speaks its numbering.
  assert.ok(!bridged('1.0.3', '0.12.19') && !bridged('1.1.3', '0.12.48'));
  assert.ok(!bridgesFor('node', '0.1.0', '0.12.75').includes('participant-info-v1'));
});
