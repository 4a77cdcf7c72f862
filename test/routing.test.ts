// Callbacks reach only the session that made the request, also when two sessions choose the same
// request_async_id (the broker substitutes its own ids and maps them back); the library's log
// records reach only the session whose handles they name.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { ConnectRequest, RoomOptions } from '@livekit/rtc-ffi-bindings/proto/room_pb.js';
import { BrokerClient, type BrokerEvent } from '../client/broker_client.js';
import { BrokerError } from '../client/broker_error.js';
import { Error_Code } from '../proto/gen/ffi_broker_pb.js';
import { startBroker, waitFor, type BrokerProcess } from './helpers/processes.js';
import net from 'node:net';

let broker: BrokerProcess;
let unreachable: string;
before(async () => {
  broker = await startBroker();
  // A loopback port nothing listens on: connecting is refused at once.
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  unreachable = `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  await new Promise((r) => server.close(r));
});
after(async () => {
  await broker.stop();
});

function connect(requestAsyncId?: bigint): FfiRequest {
  return new FfiRequest({
    message: {
      case: 'connect',
      value: new ConnectRequest({ url: unreachable, token: 'not-a-token', options: new RoomOptions({ autoSubscribe: true, joinRetries: 0, connectTimeoutMs: 2000n }), requestAsyncId }),
    },
  });
}

function collect(client: BrokerClient): BrokerEvent[] {
  const events: BrokerEvent[] = [];
  client.on('event', (e) => events.push(e));
  return events;
}

async function callbackFor(events: BrokerEvent[], asyncId: bigint): Promise<BrokerEvent> {
  const deadline = Date.now() + 30000;
  for (;;) {
    const found = events.find((e) => e.event.message.case === 'connect' && e.event.message.value.asyncId === asyncId);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no ConnectCallback for async_id ${asyncId}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('ConnectRequest to an unreachable URL: the ConnectCallback with its error reaches the requesting session only', async () => {
  const a = await BrokerClient.connect(broker.address, { clientName: 'a' });
  const b = await BrokerClient.connect(broker.address, { clientName: 'b' });
  try {
    const seenByA = collect(a);
    const seenByB = collect(b);
    const { response } = await a.request(connect());
    assert.equal(response.message.case, 'connect');
    const asyncId = response.message.value.asyncId!;
    const callback = await callbackFor(seenByA, asyncId);
    assert.equal(callback.event.message.case, 'connect');
    assert.equal(callback.event.message.value.message.case, 'error', 'the callback carries the connection error');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(seenByB.map((e) => e.event.message.case), [], 'session b received nothing');
    assert.equal(seenByA.filter((e) => e.event.message.case === 'connect').length, 1, 'exactly one callback');
  } finally {
    await a.close();
    await b.close();
  }
});

test('two sessions choosing the same request_async_id each get their own callback, under the id they chose', async () => {
  const a = await BrokerClient.connect(broker.address, { clientName: 'a' });
  const b = await BrokerClient.connect(broker.address, { clientName: 'b' });
  try {
    const seenByA = collect(a);
    const seenByB = collect(b);
    const [ra, rb] = await Promise.all([a.request(connect(42n)), b.request(connect(42n))]);
    for (const r of [ra, rb]) {
      assert.equal(r.response.message.case, 'connect');
      assert.equal(r.response.message.value.asyncId, 42n, 'the response names the id the worker chose');
    }
    await callbackFor(seenByA, 42n);
    await callbackFor(seenByB, 42n);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(seenByA.filter((e) => e.event.message.case === 'connect').length, 1);
    assert.equal(seenByB.filter((e) => e.event.message.case === 'connect').length, 1);
    assert.equal((await broker.info()).ownedHandles, 0n, 'a failed connect leaves no handle');
  } finally {
    await a.close();
    await b.close();
  }
});

test('a dropped audio stream still gets its end-of-stream event, which the library sends after the drop', async () => {
  const client = await BrokerClient.connect(broker.address);
  try {
    const { AudioSourceType, AudioStreamType, NewAudioSourceRequest, NewAudioStreamRequest } = await import('@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js');
    const { CreateAudioTrackRequest } = await import('@livekit/rtc-ffi-bindings/proto/track_pb.js');
    const src = await client.request(new FfiRequest({ message: { case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 100 }) } }));
    assert.equal(src.response.message.case, 'newAudioSource');
    const trk = await client.request(new FfiRequest({ message: { case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 't', sourceHandle: src.response.message.value.source!.handle!.id! }) } }));
    assert.equal(trk.response.message.case, 'createAudioTrack');
    const str = await client.request(new FfiRequest({ message: { case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: trk.response.message.value.track!.handle!.id!, type: AudioStreamType.AUDIO_STREAM_NATIVE }) } }));
    assert.equal(str.response.message.case, 'newAudioStream');
    const stream = str.response.message.value.stream!.handle!.id!;
    const eos = new Promise<void>((resolve) =>
      client.on('event', (e) => {
        if (e.event.message.case === 'audioStreamEvent' && e.event.message.value.streamHandle === stream && e.event.message.value.message.case === 'eos') resolve();
      }),
    );
    await client.dropHandles([stream]);
    await Promise.race([eos, new Promise((_, reject) => setTimeout(() => reject(new Error('no EOS after the drop')), 3000))]);
  } finally {
    await client.close();
  }
});

test('a library log record naming a session\'s handle reaches that session only; the operator\'s log has every record', async () => {
  const { AudioSourceType, AudioStreamType, NewAudioSourceRequest, NewAudioStreamRequest } = await import('@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js');
  const a = await BrokerClient.connect(broker.address, { clientName: 'a' });
  const b = await BrokerClient.connect(broker.address, { clientName: 'b' });
  try {
    const seenByA = collect(a);
    const seenByB = collect(b);
    const sources: bigint[] = [];
    for (const c of [a, b]) {
      const { response } = await c.request(new FfiRequest({ message: { case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 100 }) } }));
      assert.equal(response.message.case, 'newAudioSource');
      sources.push(response.message.value.source!.handle!.id!);
    }
    // An audio source is no track: the library refuses the stream and logs the request it failed,
    // printed with "track_handle: <a's source>".
    const wrongTrack = new NewAudioStreamRequest({ trackHandle: sources[0], type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: 48000, numChannels: 1 });
    await assert.rejects(a.request(new FfiRequest({ message: { case: 'newAudioStream', value: wrongTrack } })), (err) => err instanceof BrokerError && err.code === Error_Code.FFI_ERROR);
    // A failed connect logs its error, naming no handle.
    await a.request(connect());
    const named = `track_handle: ${sources[0]},`;
    const records = (events: BrokerEvent[]) => events.flatMap((e) => (e.event.message.case === 'logs' ? e.event.message.value.records.map((r) => ({ message: r.message ?? '' })) : []));
    // The library flushes its log records once a second.
    await waitFor(() => records(seenByA).some((r) => r.message.includes(named)), 10000, 'the record naming a\'s handle, at a');
    await waitFor(() => broker.logs.some((r) => r.component === 'livekit_ffi' && /error while connecting/.test(String(r.msg))), 10000, 'the failed connect\'s record in the operator\'s log');
    // The broker's log reaches the test through its stdout pipe, which may lag behind the session's stream.
    await waitFor(() => broker.logs.some((r) => r.component === 'livekit_ffi' && String(r.msg).includes(named)), 10000, 'the operator\'s log has the record a got too');
    for (const record of records(seenByA)) {
      assert.match(record.message, /handle/, 'a got only records naming its handles');
      assert.ok(!record.message.includes(`handle: ${sources[1]},`), 'a got nothing naming b\'s handle');
    }
    assert.deepEqual(records(seenByB), [], 'b got no log record');
  } finally {
    await a.close();
    await b.close();
  }
});
