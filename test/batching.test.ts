// ClientBatch and ServerBatch against the real broker and liblivekit_ffi: a batch is handled as if
// each of its messages had come alone (responses in request order, each Response before the events
// that carry what it returned), a client that accepts batches gets what is ready at once in one
// ServerBatch, one that does not never sees one, and a batch of the wrong shape ends the session.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { AudioFrameBufferInfo, AudioSourceType, CaptureAudioFrameRequest, NewAudioSourceRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiEvent, FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { ClientBatchSchema, ClientMessageSchema, DropHandlesSchema, HelloSchema, RequestSchema, type ClientMessage, type ServerMessage } from '../proto/gen/ffi_broker_pb.js';
import { ffi } from './helpers/assertions.js';
import { rawSession } from './helpers/raw_session.js';
import { startBroker, waitFor, type BrokerProcess } from './helpers/processes.js';

const CAPTURES = 50;
const FRAME_PTR = 0x10000n;
const FRAME = new Uint8Array(480 * 2);

/** Every ServerMessage in arrival order, ServerBatches unpacked; `batches` counts the batches. */
function flatten(received: readonly ServerMessage[]): { messages: ServerMessage[]; batches: number } {
  const messages: ServerMessage[] = [];
  let batches = 0;
  for (const m of received) {
    if (m.message.case !== 'batch') messages.push(m);
    else {
      batches++;
      for (const inner of m.message.value.messages) {
        assert.notEqual(inner.message.case, 'batch', 'a ServerBatch never holds a batch');
        messages.push(inner);
      }
    }
  }
  return { messages, batches };
}

function request(requestId: bigint, message: Parameters<typeof ffi>[0], buffers: { ptr: bigint; data: Uint8Array }[] = []): ClientMessage {
  return create(ClientMessageSchema, { message: { case: 'request', value: create(RequestSchema, { requestId, ffiRequest: ffi(message).toBinary(), buffers }) } });
}

const newSource = (requestId: bigint) =>
  request(requestId, { case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) });

const capture = (requestId: bigint, source: bigint) =>
  request(requestId, { case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: source, buffer: new AudioFrameBufferInfo({ dataPtr: FRAME_PTR, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }) }) }, [
    { ptr: FRAME_PTR, data: FRAME },
  ]);

/** A session with one audio source; returns the session and the source's handle. */
async function sessionWithSource(broker: BrokerProcess, clientName: string, acceptsBatches: boolean) {
  const raw = rawSession(broker.address);
  raw.hello(clientName, { acceptsBatches });
  await raw.welcome();
  raw.send(newSource(1n).message);
  await waitFor(() => flatten(raw.received).messages.some((m) => m.message.case === 'response'), 5000, 'NewAudioSource response');
  const response = flatten(raw.received).messages.find((m) => m.message.case === 'response')!.message;
  assert.ok(response.case === 'response' && response.value.error === undefined, 'NewAudioSource answered');
  const answer = FfiResponse.fromBinary(response.value.ffiResponse).message;
  assert.equal(answer.case, 'newAudioSource');
  return { raw, source: answer.value.source!.handle!.id! };
}

/** Sends CAPTURES captures in one ClientBatch and checks what comes back; returns how many ServerBatches held it. */
async function capturesInOneBatch(broker: BrokerProcess, acceptsBatches: boolean): Promise<number> {
  const { raw, source } = await sessionWithSource(broker, `captures-${acceptsBatches}`, acceptsBatches);
  const before = raw.received.length;
  const ids = Array.from({ length: CAPTURES }, (_, i) => BigInt(i + 2));
  raw.send({ case: 'batch', value: create(ClientBatchSchema, { messages: ids.map((id) => capture(id, source)) }) });
  const callbacks = () => flatten(raw.received.slice(before)).messages.filter((m) => m.message.case === 'events').flatMap((m) => (m.message.case === 'events' ? m.message.value.events : []));
  await waitFor(() => callbacks().length >= CAPTURES, 10000, `${CAPTURES} capture callbacks`);
  const { messages, batches } = flatten(raw.received.slice(before));
  const answered: bigint[] = [];
  const asyncIdsAnswered = new Set<bigint>();
  let lastSeq = 0n;
  for (const m of messages) {
    if (m.message.case === 'response') {
      assert.equal(m.message.value.error, undefined, m.message.value.error?.message);
      answered.push(m.message.value.requestId);
      const body = FfiResponse.fromBinary(m.message.value.ffiResponse).message;
      assert.equal(body.case, 'captureAudioFrame');
      asyncIdsAnswered.add(body.value.asyncId!);
    } else if (m.message.case === 'events') {
      for (const event of m.message.value.events) {
        assert.ok(event.seq > lastSeq, `event seq ${event.seq} after ${lastSeq}`);
        lastSeq = event.seq;
        const body = FfiEvent.fromBinary(event.ffiEvent).message;
        if (body.case !== 'captureAudioFrame') continue;
        assert.ok(asyncIdsAnswered.has(body.value.asyncId!), `the callback of async id ${body.value.asyncId} came before the Response that returned it`);
        assert.equal(body.value.error, undefined, body.value.error);
      }
    }
  }
  assert.deepEqual(answered, ids, 'one response per request, in request order');
  raw.close();
  return batches;
}

describe('request and response batches', () => {
  let broker: BrokerProcess;
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    assert.equal(await broker.stop(), 0, 'broker exits 0 on SIGTERM');
  });

  test('a ClientBatch of captures: responses in request order, each before its callback, in ServerBatches', async () => {
    const batches = await capturesInOneBatch(broker, true);
    assert.ok(batches >= 1, 'the answers of one batch leave together, in a ServerBatch');
  });

  test('a client that does not accept batches gets the same answers, never a ServerBatch', async () => {
    assert.equal(await capturesInOneBatch(broker, false), 0);
  });

  test('requests and drops in one batch are handled in their order', async () => {
    const { raw, source } = await sessionWithSource(broker, 'drops', true);
    const before = raw.received.length;
    const drop = create(ClientMessageSchema, { message: { case: 'dropHandles', value: create(DropHandlesSchema, { handles: [source], requestId: 3n }) } });
    // The capture before the drop has its source; the one after it names a handle no longer owned.
    raw.send({ case: 'batch', value: create(ClientBatchSchema, { messages: [capture(2n, source), drop, capture(4n, source)] }) });
    await waitFor(() => flatten(raw.received.slice(before)).messages.filter((m) => m.message.case === 'response').length === 3, 5000, 'three responses');
    const responses = flatten(raw.received.slice(before)).messages.flatMap((m) => (m.message.case === 'response' ? [m.message.value] : []));
    assert.deepEqual(responses.map((r) => r.requestId), [2n, 3n, 4n]);
    assert.equal(responses[0]!.error, undefined, 'capture before the drop');
    assert.equal(responses[1]!.error, undefined, 'the drop');
    assert.match(responses[2]!.error?.message ?? '', /does not own/, 'capture after the drop');
    await waitFor(async () => (await broker.info()).sessions.find((s) => s.clientName === 'drops' && s.ownedHandles === 0n) !== undefined, 5000, 'no handles left');
    raw.close();
  });

  for (const [what, inner] of [
    ['a hello', create(ClientMessageSchema, { message: { case: 'hello', value: create(HelloSchema, { clientName: 'again' }) } })],
    ['a batch', create(ClientMessageSchema, { message: { case: 'batch', value: create(ClientBatchSchema, { messages: [] }) } })],
    ['an empty message', create(ClientMessageSchema, {})],
  ] as const) {
    test(`a batch holding ${what} ends the session with INVALID_ARGUMENT`, async () => {
      const { raw, source } = await sessionWithSource(broker, `bad batch: ${what}`, true);
      raw.send({ case: 'batch', value: create(ClientBatchSchema, { messages: [capture(2n, source), inner] }) });
      const status = await raw.status();
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT, status.details);
      assert.match(status.details, /ClientBatch holds only request and drop_handles/);
      await waitFor(async () => !(await broker.info()).sessions.some((s) => s.clientName === `bad batch: ${what}`), 5000, 'the session and its source released');
      raw.close();
    });
  }
});
