// A hostile session against a victim that streams audio: it names every handle id from 1 to the
// highest issued in every handle field of every request kind (the list comes from the schema), and
// drops each of them. Every one it does not own must be PERMISSION_DENIED, and the victim must not
// notice: its handles intact, its frames flowing, none of its events elsewhere.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { AudioSourceType, NewAudioSourceRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { BrokerClient } from '../../client/broker_client.js';
import { BrokerError } from '../../client/broker_error.js';
import { FfiRequest, planOf, type SchemaField, type SchemaType } from '../../broker/livekit_schema.js';
import { ffi } from '../helpers/assertions.js';
import { WORKERS, spawnWorker, waitFor, watchProgress, type WorkerProcess } from '../helpers/processes.js';
import { report, snapshot, startProbedBroker, type ProbedBroker } from './probe.js';

const AUDIO_WORKER = path.join(WORKERS, 'audio_worker.js');
const IN_FLIGHT = 64;
// Two streams of 10 ms frames: 200 frames/s when healthy; a generous floor on a busy machine.
const MIN_FRAMES_PER_SECOND = 100;

/** A handle field reachable from a request kind: the field numbers leading to it, and its name. */
interface HandlePath {
  kind: string;
  numbers: number[];
  name: string;
}

/** Every *_handle field under each request kind, through singular message fields (depth ≤ 4). */
function handlePaths(): HandlePath[] {
  const out: HandlePath[] = [];
  const visit = (kind: string, type: SchemaType, numbers: number[], names: string[], seen: Set<string>) => {
    if (numbers.length > 5 || seen.has(type.typeName)) return;
    const plan = planOf(type);
    for (const f of plan.handleRefs) out.push({ kind, numbers: [...numbers, f.no], name: [...names, f.name].join('.') });
    for (const f of plan.children as SchemaField[]) {
      if (f.repeated) continue;
      visit(kind, f.T as SchemaType, [...numbers, f.no], [...names, f.name], new Set([...seen, type.typeName]));
    }
  };
  for (const field of (FfiRequest as unknown as SchemaType).fields.list()) visit(field.localName, field.T as SchemaType, [field.no], [], new Set());
  return out;
}

const varint = (v: bigint): number[] => {
  const out: number[] = [];
  for (; v >= 0x80n; v >>= 7n) out.push(Number(v & 0x7fn) | 0x80);
  out.push(Number(v));
  return out;
};

/**
 * The FfiRequest bytes with only this handle field set, built on the wire: the schema's encoder
 * would refuse to leave the kind's other required fields unset, and the broker must answer on the
 * handle alone.
 */
function encode(p: HandlePath, handle: bigint): Uint8Array {
  let body = [...varint(BigInt(p.numbers[p.numbers.length - 1]! << 3)), ...varint(handle)];
  for (let i = p.numbers.length - 2; i >= 0; i--) body = [...varint(BigInt((p.numbers[i]! << 3) | 2)), ...varint(BigInt(body.length)), ...body];
  return Uint8Array.from(body);
}

let broker: ProbedBroker;
let victim: WorkerProcess;

before(async () => {
  // No request-rate limit: thousands of requests are sent as fast as they are answered.
  broker = await startProbedBroker(['--max-request-rate', '0']);
  victim = spawnWorker(AUDIO_WORKER, ['--address', broker.address, '--streams', '2', '--seconds', '0']);
});
after(async () => {
  victim.proc.kill('SIGKILL');
  await victim.exited;
  await broker.stop();
});

test('a hostile session that names every issued handle in every request kind gets PERMISSION_DENIED and harms nobody', async () => {
  const progress = watchProgress(victim);
  const ready = await victim.next<{ pid: number; sessionId: string; handles: string[] }>('ready');
  const victimHandles = ready.handles.map(BigInt);
  const hostile = await BrokerClient.connect(broker.address, { clientName: 'hostile' });
  // Its own handle, the newest issued: every id up to it has been issued to someone.
  const own = await hostile.request(ffi({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) }));
  assert.equal(own.response.message.case, 'newAudioSource');
  const ownHandle = own.response.message.value.source!.handle!.id!;
  const maxIssued = [ownHandle, ...victimHandles].reduce((a, b) => (a > b ? a : b));
  const victimOwnedBefore = (await broker.info()).sessions.find((s) => s.pid === ready.pid)!.ownedHandles;
  await waitFor(() => progress.length >= 2, 15000, 'the victim streaming');
  const framesBefore = progress[progress.length - 1]!;

  const paths = handlePaths();
  assert.ok(paths.length >= 60, `the schema has handle fields in many request kinds (found ${paths.length})`);
  const jobs: { path: HandlePath; handle: bigint }[] = [];
  for (const p of paths) for (let h = 1n; h <= maxIssued; h++) if (h !== ownHandle) jobs.push({ path: p, handle: h });
  const outcomes = new Map<string, number>();
  const wrong: string[] = [];
  let next = 0;
  const started = Date.now();
  const one = async () => {
    while (next < jobs.length) {
      const { path: p, handle } = jobs[next++]!;
      let outcome: string;
      try {
        await hostile.request(encode(p, handle));
        outcome = 'ok';
      } catch (err) {
        if (!(err instanceof BrokerError)) throw err;
        outcome = err.codeName;
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      if (outcome !== 'PERMISSION_DENIED' && wrong.length < 20) wrong.push(`${p.kind}.${p.name} = ${handle}: ${outcome}`);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, one));
  // Drops: each id it does not own, one by one.
  let dropsDenied = 0;
  for (let h = 1n; h <= maxIssued; h++) {
    if (h === ownHandle) continue;
    try {
      await hostile.dropHandles([h]);
    } catch (err) {
      if (err instanceof BrokerError && err.codeName === 'PERMISSION_DENIED') dropsDenied++;
    }
  }
  const attackSeconds = (Date.now() - started) / 1000;

  // The victim: same handles, and still streaming at pace for 2 s after the attack.
  const victimAfter = (await broker.info()).sessions.find((s) => s.pid === ready.pid);
  const mark = progress.length;
  await waitFor(() => progress.length >= mark + 3, 15000, 'victim progress after the attack');
  const last = progress.slice(mark);
  const rate = ((last[last.length - 1]!.frames - last[0]!.frames) * 1000) / (last[last.length - 1]!.at - last[0]!.at);
  const final = await snapshot(broker);
  report('hostile_sessions', {
    handleFields: paths.length,
    requestKinds: new Set(paths.map((p) => p.kind)).size,
    maxIssued,
    requests: jobs.length,
    outcomes: Object.fromEntries(outcomes),
    dropsTried: Number(maxIssued) - 1,
    dropsDenied,
    attackSeconds: Math.round(attackSeconds * 10) / 10,
    victimHandles: { before: Number(victimOwnedBefore), after: Number(victimAfter?.ownedHandles ?? -1) },
    victimFramesPerSecondAfter: Math.round(rate),
    victimFramesDuringAttack: last[0]!.frames - framesBefore.frames,
    unvalidatedPointers: final.unvalidatedPointers,
  });
  assert.deepEqual(wrong, [], 'every request naming a handle the session does not own is PERMISSION_DENIED');
  assert.equal(outcomes.get('PERMISSION_DENIED'), jobs.length);
  assert.equal(dropsDenied, Number(maxIssued) - 1, 'every drop of a handle it does not own is refused');
  assert.ok(victimAfter !== undefined && victimAfter.connected, 'the victim session is still there');
  assert.equal(victimAfter.ownedHandles, victimOwnedBefore, 'the victim owns the same handles');
  assert.ok(rate >= MIN_FRAMES_PER_SECOND, `the victim receives ${rate.toFixed(0)} frames/s after the attack`);
  // The hostile session still owns its own source and nothing else.
  assert.equal((await broker.info()).sessions.find((s) => s.clientName === 'hostile')!.ownedHandles, 1n);
  await hostile.close();
});
