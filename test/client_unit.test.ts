// Client-only behaviour against an in-process fake broker (grpc-js server on a Unix socket).
// The fake knows nothing of liblivekit_ffi; it scripts Session replies per test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { FfiEvent, FfiRequest, FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import {
  AudioFrameBufferInfo,
  AudioFrameReceived,
  AudioStreamEvent,
  CaptureAudioFrameRequest,
  CaptureAudioFrameResponse,
  OwnedAudioFrameBuffer,
} from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiOwnedHandle } from '@livekit/rtc-ffi-bindings/proto/handle_pb.js';
import {
  BufferSchema,
  ErrorSchema,
  EventBatchSchema,
  EventSchema,
  InfoResponseSchema,
  NoticeSchema,
  ResponseSchema,
  ServerBatchSchema,
  ServerMessageSchema,
  ShuttingDownSchema,
  WelcomeSchema,
  type ClientMessage,
  type Hello,
  type InfoRequest,
  type InfoResponse,
  type Request,
  type ServerMessage,
} from '../proto/gen/ffi_broker_pb.js';
import { FfiBrokerService } from '../proto/service.js';
import { waitFor } from './helpers/processes.js';
import {
  BrokerClient,
  BrokerError,
  Error_Code,
  allocatePointer,
  audioBuffer,
  audioSamples,
  bufferAt,
  type BrokerEvent,
} from '../client/index.js';

type ServerCall = grpc.ServerDuplexStream<ClientMessage, ServerMessage>;

/** What a test scripts for each Session: called with the call and its Hello. */
type SessionScript = (call: ServerCall, hello: Hello) => void;

interface Fake {
  address: string;
  stop(): Promise<void>;
  kill(): void;
}

const dir = mkdtempSync(join(tmpdir(), 'ffi-broker-client-test-'));
let sockets = 0;
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

function welcome(call: ServerCall, init: Partial<{ sessionId: string; resumeToken: string; resumed: boolean }> = {}): void {
  call.write(
    create(ServerMessageSchema, {
      message: {
        case: 'welcome',
        value: create(WelcomeSchema, {
          sessionId: init.sessionId ?? 'sess-1',
          resumeToken: init.resumeToken ?? 'tok-1',
          ffiVersion: '0.12.75',
          brokerVersion: 'fake-1',
          resumed: init.resumed ?? false,
        }),
      },
    }),
  );
}

function respond(
  call: ServerCall,
  requestId: bigint,
  body: { ffiResponse?: Uint8Array; buffers?: [bigint, Uint8Array][]; error?: [Error_Code, string] },
): void {
  call.write(
    create(ServerMessageSchema, {
      message: {
        case: 'response',
        value: create(ResponseSchema, {
          requestId,
          ffiResponse: body.ffiResponse ?? new Uint8Array(),
          buffers: (body.buffers ?? []).map(([ptr, data]) => create(BufferSchema, { ptr, data })),
          error: body.error === undefined ? undefined : create(ErrorSchema, { code: body.error[0], message: body.error[1] }),
        }),
      },
    }),
  );
}

function frameEvent(seq: bigint, samples: Int16Array): { seq: bigint; ffiEvent: Uint8Array; buffers: [bigint, Uint8Array][] } {
  // A made-up "broker side" address for the frame memory.
  const ptr = 0x7f00_0000_0000n + seq * 0x1000n;
  const ev = new FfiEvent({
    message: {
      case: 'audioStreamEvent',
      value: new AudioStreamEvent({
        streamHandle: 9n,
        message: {
          case: 'frameReceived',
          value: new AudioFrameReceived({
            frame: new OwnedAudioFrameBuffer({
              handle: new FfiOwnedHandle({ id: 1000n + seq }),
              info: new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: 48000, samplesPerChannel: samples.length }),
            }),
          }),
        },
      }),
    },
  });
  return { seq, ffiEvent: ev.toBinary(), buffers: [[ptr, new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength)]] };
}

function sendEvents(call: ServerCall, events: ReturnType<typeof frameEvent>[]): void {
  call.write(
    create(ServerMessageSchema, {
      message: {
        case: 'events',
        value: create(EventBatchSchema, {
          events: events.map((e) =>
            create(EventSchema, {
              seq: e.seq,
              ffiEvent: e.ffiEvent,
              buffers: e.buffers.map(([ptr, data]) => create(BufferSchema, { ptr, data })),
            }),
          ),
        }),
      },
    }),
  );
}

/** Samples 0..n-1 plus an offset, so each frame's content identifies it. */
function ramp(n: number, base: number): Int16Array {
  return Int16Array.from({ length: n }, (_, i) => base + i);
}

function frameOf(ev: BrokerEvent): { seq: bigint; samples: number[] } {
  assert.equal(ev.event.message.case, 'audioStreamEvent');
  const ase = ev.event.message.value as AudioStreamEvent;
  assert.equal(ase.message.case, 'frameReceived');
  const info = (ase.message.value as AudioFrameReceived).frame!.info!;
  return { seq: ev.seq, samples: [...audioSamples(ev.buffers, info)] };
}

/** Request messages as the fake sees them; Hello goes to the script. */
/** Each request or drop, batches unpacked; `shapes` gets how many each ClientMessage held. */
function onRequests(call: ServerCall, handler: (msg: ClientMessage) => void, shapes: number[] = []): void {
  call.on('data', (msg: ClientMessage) => {
    if (msg.message.case === 'hello') return;
    const inner = msg.message.case === 'batch' ? msg.message.value.messages : [msg];
    shapes.push(inner.length);
    for (const m of inner) handler(m);
  });
}

async function startFake(script: SessionScript, info?: (req: InfoRequest) => InfoResponse): Promise<Fake> {
  const server = new grpc.Server();
  server.addService(FfiBrokerService, {
    session: (call: ServerCall) => {
      call.on('error', () => {}); // the client cancelling is expected in some tests
      call.once('data', (first: ClientMessage) => {
        assert.equal(first.message.case, 'hello');
        script(call, first.message.value as Hello);
      });
      // A clean half-close from the client: finish with OK, as the real broker does.
      call.on('end', () => call.end());
    },
    info: (call: grpc.ServerUnaryCall<InfoRequest, InfoResponse>, cb: grpc.sendUnaryData<InfoResponse>) => {
      if (info === undefined) cb({ code: grpc.status.UNIMPLEMENTED, details: 'no info in this fake' });
      else cb(null, info(call.request));
    },
  });
  const address = `unix://${join(dir, `broker-${++sockets}.sock`)}`;
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  return {
    address,
    stop: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        // Sessions a test left open would hold tryShutdown forever.
        setTimeout(() => server.forceShutdown(), 1000).unref();
      }),
    kill: () => server.forceShutdown(),
  };
}

function captureRequest(sourceHandle: bigint, dataPtr: bigint, samplesPerChannel: number): FfiRequest {
  return new FfiRequest({
    message: {
      case: 'captureAudioFrame',
      value: new CaptureAudioFrameRequest({
        sourceHandle,
        buffer: new AudioFrameBufferInfo({ dataPtr, numChannels: 1, sampleRate: 48000, samplesPerChannel }),
      }),
    },
  });
}

function captureResponse(asyncId: bigint): Uint8Array {
  return new FfiResponse({
    message: { case: 'captureAudioFrame', value: new CaptureAudioFrameResponse({ asyncId }) },
  }).toBinary();
}

async function rejectsWith(p: Promise<unknown>, check: (e: BrokerError) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof BrokerError, `expected BrokerError, got ${String(e)}`);
    check(e);
    return true;
  });
}

test('connect sends Hello and exposes the Welcome', { timeout: 10_000 }, async () => {
  let hello: Hello | undefined;
  const fake = await startFake((call, h) => {
    hello = h;
    welcome(call, { sessionId: 'S-42', resumeToken: 'R-42', resumed: true });
  });
  const client = await BrokerClient.connect(fake.address, {
    clientName: 'unit',
    clientVersion: '9.9',
    authToken: 'secret',
    resumeToken: 'R-41',
  });
  assert.equal(client.sessionId, 'S-42');
  assert.equal(client.resumeToken, 'R-42');
  assert.equal(client.ffiVersion, '0.12.75');
  assert.equal(client.brokerVersion, 'fake-1');
  assert.equal(client.resumed, true);
  assert.equal(client.isOpen, true);
  assert.equal(hello?.pid, process.pid);
  assert.equal(hello?.clientName, 'unit');
  assert.equal(hello?.clientVersion, '9.9');
  assert.equal(hello?.authToken, 'secret');
  assert.equal(hello?.resumeToken, 'R-41');
  const closed = once(client, 'close');
  await client.close();
  assert.deepEqual(await closed, [undefined]);
  assert.equal(client.isOpen, false);
  assert.equal(client.closeReason, undefined);
  await fake.stop();
});

test('default address comes from LIVEKIT_FFI_BROKER', { timeout: 10_000 }, async () => {
  const fake = await startFake((call) => welcome(call));
  const saved = process.env.LIVEKIT_FFI_BROKER;
  process.env.LIVEKIT_FFI_BROKER = fake.address;
  try {
    const client = await BrokerClient.connect();
    assert.equal(client.address, fake.address);
    await client.close();
  } finally {
    if (saved === undefined) delete process.env.LIVEKIT_FFI_BROKER;
    else process.env.LIVEKIT_FFI_BROKER = saved;
  }
  await fake.stop();
});

test('requests get ids from 1, responses are matched by id, buffers travel both ways', { timeout: 10_000 }, async () => {
  const seen: Request[] = [];
  const fake = await startFake((call) => {
    welcome(call);
    onRequests(call, (msg) => {
      assert.equal(msg.message.case, 'request');
      seen.push(msg.message.value as Request);
      if (seen.length < 3) return;
      // Answer out of order: the client must match by id, not by position.
      for (const req of [...seen].reverse()) {
        const decoded = FfiRequest.fromBinary(req.ffiRequest);
        const info = (decoded.message.value as CaptureAudioFrameRequest).buffer!;
        const sent = req.buffers.find((b) => b.ptr === info.dataPtr);
        respond(call, req.requestId, {
          ffiResponse: captureResponse(req.requestId * 100n),
          // Echo the samples back reversed under a "broker" pointer.
          buffers: [[0xabc0n + req.requestId, Uint8Array.from(sent?.data ?? []).reverse()]],
        });
      }
    });
  });
  const client = await BrokerClient.connect(fake.address);
  const calls = [1, 2, 3].map((n) => {
    const samples = ramp(4, n * 10);
    const [ptr, bytes] = audioBuffer(samples);
    return { n, ptr, bytes, done: client.request(captureRequest(BigInt(n), ptr, samples.length), [[ptr, bytes]]) };
  });
  const results = await Promise.all(calls.map((c) => c.done));
  assert.deepEqual(
    seen.map((r) => r.requestId),
    [1n, 2n, 3n],
  );
  for (const [i, c] of calls.entries()) {
    const req = seen[i]!;
    assert.equal(req.buffers.length, 1);
    assert.equal(req.buffers[0]!.ptr, c.ptr);
    assert.deepEqual([...req.buffers[0]!.data], [...c.bytes]);
    const { response, buffers } = results[i]!;
    assert.equal(response.message.case, 'captureAudioFrame');
    assert.equal((response.message.value as CaptureAudioFrameResponse).asyncId, BigInt(c.n) * 100n);
    assert.deepEqual([...buffers.get(0xabc0n + BigInt(c.n))!], [...c.bytes].reverse());
  }
  // Encoded bytes are accepted as they are.
  const raw = client.request(captureRequest(7n, 0n, 0).toBinary());
  seen.length = 2; // the fake answers whenever it has three
  const { response } = await raw;
  assert.equal((response.message.value as CaptureAudioFrameResponse).asyncId, 400n);
  await client.close();
  await fake.stop();
});

test('a Response error rejects with BrokerError carrying the code; the session goes on', { timeout: 10_000 }, async () => {
  const fake = await startFake((call) => {
    welcome(call);
    onRequests(call, (msg) => {
      const req = msg.message.value as Request;
      if (req.requestId === 1n) respond(call, 1n, { error: [Error_Code.PERMISSION_DENIED, 'handle 77 is not yours'] });
      else if (req.requestId === 2n) respond(call, 2n, { error: [Error_Code.FFI_ERROR, 'liblivekit_ffi refused it'] });
      else respond(call, req.requestId, { ffiResponse: captureResponse(5n) });
    });
  });
  const client = await BrokerClient.connect(fake.address);
  await rejectsWith(client.request(captureRequest(77n, 0n, 0)), (e) => {
    assert.equal(e.code, Error_Code.PERMISSION_DENIED);
    assert.equal(e.codeName, 'PERMISSION_DENIED');
    assert.equal(e.detail, 'handle 77 is not yours');
    assert.match(e.message, /PERMISSION_DENIED: handle 77 is not yours/);
    assert.equal(e.grpcCode, undefined);
  });
  await rejectsWith(client.request(captureRequest(1n, 0n, 0)), (e) => {
    assert.equal(e.code, Error_Code.FFI_ERROR);
    assert.equal(e.codeName, 'FFI_ERROR');
  });
  const ok = await client.request(captureRequest(1n, 0n, 0));
  assert.equal((ok.response.message.value as CaptureAudioFrameResponse).asyncId, 5n);
  await client.close();
  await fake.stop();
});

test('requests of one event-loop turn leave in one ClientBatch; a ServerBatch is handled in order, each awaiter before the next message', { timeout: 10_000 }, async () => {
  const shapes: number[] = [];
  const seen: Request[] = [];
  let server: ServerCall | undefined;
  let hello: Hello | undefined;
  const fake = await startFake((call, h) => {
    server = call;
    hello = h;
    welcome(call);
    onRequests(call, (msg) => seen.push(msg.message.value as Request), shapes);
  });
  const client = await BrokerClient.connect(fake.address);
  assert.equal(hello?.acceptsBatches, true, 'Hello.accepts_batches');
  const samples = ramp(4, 0);
  const [ptr, bytes] = audioBuffer(samples);
  const turn = [1n, 2n, 3n].map((h) => client.request(captureRequest(h, ptr, samples.length), [[ptr, bytes]]));
  // The bytes are taken when request() is called, as the library would take them, not when the batch leaves.
  const sent = Uint8Array.from(bytes);
  bytes.fill(0x55);
  await waitFor(() => seen.length === 3, 5000, 'three requests');
  for (const r of seen) assert.deepEqual(Uint8Array.from(r.buffers[0]!.data), sent, 'the bytes as they were at request()');
  const alone = client.request(captureRequest(4n, ptr, samples.length), [[ptr, bytes]]);
  await waitFor(() => seen.length === 4, 5000, 'the fourth request');
  assert.deepEqual(shapes, [3, 1], "three requests of one turn in one ClientBatch, the next turn's alone");
  assert.deepEqual(seen.map((r) => r.requestId), [1n, 2n, 3n, 4n]);

  // One ServerBatch: response 1, an event, response 2..4. The code awaiting response 1 must run
  // before the event after it is emitted (as when they come one by one).
  const order: string[] = [];
  client.on('event', (ev) => order.push(`event ${ev.seq}`));
  const awaited = [...turn, alone].map((p, i) => p.then(() => order.push(`awaiter ${i + 1}`)));
  const responses = seen.map((r) =>
    create(ServerMessageSchema, { message: { case: 'response', value: create(ResponseSchema, { requestId: r.requestId, ffiResponse: captureResponse(r.requestId * 10n) }) } }),
  );
  const event = frameEvent(1n, ramp(2, 7));
  const events = create(ServerMessageSchema, {
    message: { case: 'events', value: create(EventBatchSchema, { events: [create(EventSchema, { seq: event.seq, ffiEvent: event.ffiEvent, buffers: event.buffers.map(([p, data]) => create(BufferSchema, { ptr: p, data })) })] }) },
  });
  server!.write(create(ServerMessageSchema, { message: { case: 'batch', value: create(ServerBatchSchema, { messages: [responses[0]!, events, ...responses.slice(1)] }) } }));
  await Promise.all(awaited);
  assert.deepEqual(order, ['awaiter 1', 'event 1', 'awaiter 2', 'awaiter 3', 'awaiter 4']);
  await client.close();
  await fake.stop();
});

test('events arrive in order, decoded with buffers, to listeners and to each iterator', { timeout: 10_000 }, async () => {
  let server: ServerCall | undefined;
  const fake = await startFake((call) => {
    server = call;
    welcome(call);
  });
  const client = await BrokerClient.connect(fake.address);
  const emitted: { seq: bigint; samples: number[] }[] = [];
  client.on('event', (ev) => emitted.push(frameOf(ev)));
  const first = client.events();

  // Batch A (two messages), seen by `first` only.
  sendEvents(server!, [frameEvent(1n, ramp(3, 100)), frameEvent(2n, ramp(3, 200))]);
  sendEvents(server!, [frameEvent(3n, ramp(5, 300))]);
  const a: { seq: bigint; samples: number[] }[] = [];
  for (let i = 0; i < 3; i++) a.push(frameOf((await first.next()).value as BrokerEvent));
  assert.deepEqual(a, [
    { seq: 1n, samples: [100, 101, 102] },
    { seq: 2n, samples: [200, 201, 202] },
    { seq: 3n, samples: [300, 301, 302, 303, 304] },
  ]);

  // Batch B: both iterators.
  const second = client.events();
  sendEvents(server!, [frameEvent(4n, ramp(2, 400)), frameEvent(5n, ramp(2, 500))]);
  for (const it of [first, second]) {
    assert.deepEqual(frameOf((await it.next()).value as BrokerEvent), { seq: 4n, samples: [400, 401] });
    assert.deepEqual(frameOf((await it.next()).value as BrokerEvent), { seq: 5n, samples: [500, 501] });
  }

  // return() unsubscribes `second` only.
  assert.deepEqual(await second.return!(), { value: undefined, done: true });
  sendEvents(server!, [frameEvent(6n, ramp(1, 600))]);
  assert.deepEqual(frameOf((await first.next()).value as BrokerEvent), { seq: 6n, samples: [600] });
  assert.equal((await second.next()).done, true);

  assert.deepEqual(
    emitted.map((e) => e.seq),
    [1n, 2n, 3n, 4n, 5n, 6n],
  );

  // A clean close ends the iterator (a waiting next() included) without an error.
  const waiting = first.next();
  await client.close();
  assert.deepEqual(await waiting, { value: undefined, done: true });
  assert.equal((await client.events().next()).done, true);
  await fake.stop();
});

test('for-await over events() stops at close and break unsubscribes', { timeout: 10_000 }, async () => {
  let server: ServerCall | undefined;
  const fake = await startFake((call) => {
    server = call;
    welcome(call);
  });
  const client = await BrokerClient.connect(fake.address);
  const seqs: bigint[] = [];
  const consumer = (async () => {
    for await (const ev of client.events()) {
      seqs.push(ev.seq);
      if (ev.seq === 3n) await client.close();
    }
  })();
  const breaker = (async () => {
    for await (const ev of client.events()) if (ev.seq === 1n) break;
  })();
  sendEvents(server!, [1n, 2n, 3n].map((s) => frameEvent(s, ramp(1, 0))));
  await Promise.all([consumer, breaker]);
  assert.deepEqual(seqs, [1n, 2n, 3n]);
  await fake.stop();
});

test('an Event written right after its Response reaches a listener added after await', { timeout: 10_000 }, async () => {
  const fake = await startFake((call) => {
    welcome(call);
    onRequests(call, (msg) => {
      const req = msg.message.value as Request;
      // Same turn, as the broker does when the callback is already queued.
      respond(call, req.requestId, { ffiResponse: captureResponse(55n) });
      sendEvents(call, [frameEvent(1n, ramp(2, 7))]);
    });
  });
  const client = await BrokerClient.connect(fake.address);
  for (let round = 0; round < 5; round++) {
    const { response } = await client.request(captureRequest(1n, 0n, 0));
    assert.equal((response.message.value as CaptureAudioFrameResponse).asyncId, 55n);
    const [ev] = (await once(client, 'event')) as [BrokerEvent];
    assert.deepEqual(frameOf(ev).samples, [7, 8]);
  }
  await client.close();
  await fake.stop();
});

test('notices are emitted decoded', { timeout: 10_000 }, async () => {
  const fake = await startFake((call) => {
    welcome(call);
    onRequests(call, () =>
      call.write(
        create(ServerMessageSchema, {
          message: {
            case: 'notice',
            value: create(NoticeSchema, {
              notice: { case: 'shuttingDown', value: create(ShuttingDownSchema, { graceMs: 1500 }) },
            }),
          },
        }),
      ),
    );
  });
  const client = await BrokerClient.connect(fake.address);
  const notice = once(client, 'notice');
  void client.request(captureRequest(1n, 0n, 0)).catch(() => {});
  const [n] = await notice;
  assert.equal(n.notice.case, 'shuttingDown');
  assert.equal(n.notice.value.graceMs, 1500);
  await client.close();
  await fake.stop();
});

test('close() rejects pending requests with UNAVAILABLE "session closed"', { timeout: 10_000 }, async () => {
  let ended = false;
  const fake = await startFake((call) => {
    welcome(call);
    call.on('end', () => (ended = true));
    // Never answers requests.
  });
  const client = await BrokerClient.connect(fake.address);
  const it = client.events();
  const pending = client.request(captureRequest(1n, 0n, 0));
  const drop = client.dropHandles([1n]);
  // Handlers attached before close() rejects them (else: unhandled rejections).
  const rejected = [pending, drop].map((p) =>
    rejectsWith(p, (e) => {
      assert.equal(e.code, Error_Code.UNAVAILABLE);
      assert.match(e.message, /session closed/);
    }),
  );
  await client.close();
  await Promise.all(rejected);
  assert.equal((await it.next()).done, true);
  assert.equal(ended, true, 'the fake saw the half-close');
  await rejectsWith(client.request(captureRequest(1n, 0n, 0)), (e) => assert.equal(e.code, Error_Code.UNAVAILABLE));
  await client.close(); // idempotent
  await fake.stop();
});

test('a stream that ends with a status fails pending requests, emits close, ends iterators with the error', { timeout: 10_000 }, async () => {
  const fake = await startFake((call) => {
    welcome(call);
    onRequests(call, (msg) => {
      const req = msg.message.value as Request;
      if (req.requestId === 1n) {
        // Events before the failure are still delivered, in order, before the error.
        sendEvents(call, [frameEvent(1n, ramp(1, 1))]);
      } else {
        call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'broker over its session limit' });
      }
    });
  });
  const client = await BrokerClient.connect(fake.address);
  const it = client.events();
  const closeEvent = once(client, 'close');
  const first = client.request(captureRequest(1n, 0n, 0));
  const second = client.request(captureRequest(2n, 0n, 0));
  const check = (e: BrokerError) => {
    assert.equal(e.code, Error_Code.UNAVAILABLE);
    assert.equal(e.codeName, 'UNAVAILABLE');
    assert.equal(e.grpcCode, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(e.grpcDetails, 'broker over its session limit');
    assert.match(e.message, /RESOURCE_EXHAUSTED.*broker over its session limit/);
  };
  await rejectsWith(first, check);
  await rejectsWith(second, check);
  const [closeErr] = (await closeEvent) as [BrokerError | undefined];
  assert.ok(closeErr instanceof BrokerError);
  check(closeErr);
  assert.equal(client.closeReason, closeErr);
  assert.equal((await it.next()).value?.seq, 1n);
  await rejectsWith(it.next(), check);
  assert.equal((await it.next()).done, true, 'the error is thrown once, then the iterator is done');
  await rejectsWith(client.request(captureRequest(3n, 0n, 0)), check);
  await rejectsWith(client.events().next(), check);
  await client.close(); // already closed: resolves
  await fake.stop();
});

test('a broker that dies fails pending requests with UNAVAILABLE', { timeout: 10_000 }, async () => {
  let gotRequest: () => void = () => {};
  const requested = new Promise<void>((r) => (gotRequest = r));
  const fake = await startFake((call) => {
    welcome(call);
    onRequests(call, () => gotRequest());
  });
  // No resume window: a dead broker ends the session at once.
  const client = await BrokerClient.connect(fake.address, { resumeWindowMs: 0 });
  const it = client.events();
  const pending = client.request(captureRequest(1n, 0n, 0));
  await requested;
  fake.kill();
  await rejectsWith(pending, (e) => {
    assert.equal(e.code, Error_Code.UNAVAILABLE);
    assert.notEqual(e.grpcCode, undefined);
    assert.notEqual(e.grpcCode, grpc.status.OK);
  });
  await assert.rejects(it.next(), BrokerError);
  assert.equal(client.isOpen, false);
});

test('dropHandles awaits its Response and rejects on PERMISSION_DENIED', { timeout: 10_000 }, async () => {
  const drops: { handles: bigint[]; requestId: bigint }[] = [];
  const fake = await startFake((call) => {
    welcome(call);
    onRequests(call, (msg) => {
      assert.equal(msg.message.case, 'dropHandles');
      const d = msg.message.value as { handles: bigint[]; requestId: bigint };
      drops.push({ handles: [...d.handles], requestId: d.requestId });
      const refused = d.handles.filter((h) => h >= 600n);
      respond(
        call,
        d.requestId,
        refused.length > 0 ? { error: [Error_Code.PERMISSION_DENIED, `not owned: ${refused.join(',')}`] } : {},
      );
    });
  });
  const client = await BrokerClient.connect(fake.address);
  await client.dropHandles([1n, 2n]);
  await rejectsWith(client.dropHandles(new Set([3n, 666n])), (e) => {
    assert.equal(e.code, Error_Code.PERMISSION_DENIED);
    assert.match(e.message, /666/);
  });
  await client.dropHandles([]); // nothing to send
  assert.deepEqual(drops, [
    { handles: [1n, 2n], requestId: 1n },
    { handles: [3n, 666n], requestId: 2n },
  ]);
  await client.close();
  await fake.stop();
});

test('connect fails with BrokerError: no broker, no Welcome in time, refused Hello', { timeout: 15_000 }, async () => {
  await rejectsWith(BrokerClient.connect(`unix://${join(dir, 'nobody-here.sock')}`, { connectTimeoutMs: 5000 }), (e) => {
    assert.equal(e.code, Error_Code.UNAVAILABLE);
    assert.equal(e.grpcCode, grpc.status.UNAVAILABLE);
    assert.match(e.message, /could not open a session/);
  });

  const silent = await startFake(() => {});
  const t0 = Date.now();
  await rejectsWith(BrokerClient.connect(silent.address, { connectTimeoutMs: 300 }), (e) => {
    assert.equal(e.code, Error_Code.UNAVAILABLE);
    assert.match(e.message, /no Welcome .* within 300 ms/);
  });
  assert.ok(Date.now() - t0 < 3000);
  await silent.stop();

  const strict = await startFake((call, hello) => {
    if (hello.authToken !== 'right') call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'bad auth token' });
    else welcome(call);
  });
  await rejectsWith(BrokerClient.connect(strict.address, { authToken: 'wrong' }), (e) => {
    assert.equal(e.grpcCode, grpc.status.UNAUTHENTICATED);
    assert.match(e.message, /bad auth token/);
  });
  const ok = await BrokerClient.connect(strict.address, { authToken: 'right' });
  await ok.close();
  await strict.stop();

  const rude = await startFake((call) => respond(call, 1n, {}));
  await rejectsWith(BrokerClient.connect(rude.address), (e) => assert.match(e.message, /before Welcome/));
  await rude.stop();
});

test('info() returns the InfoResponse; failures are BrokerErrors', { timeout: 10_000 }, async () => {
  const fake = await startFake(
    () => {},
    () => create(InfoResponseSchema, { brokerVersion: 'fake-1', ffiVersion: '0.12.75', ownedHandles: 3n, uptimeS: 1.5 }),
  );
  const info = await BrokerClient.info(fake.address);
  assert.equal(info.brokerVersion, 'fake-1');
  assert.equal(info.ownedHandles, 3n);
  assert.equal(info.uptimeS, 1.5);
  await fake.stop();
  await rejectsWith(BrokerClient.info(fake.address, { timeoutMs: 2000 }), (e) => {
    assert.equal(e.code, Error_Code.UNAVAILABLE);
    assert.notEqual(e.grpcCode, undefined);
  });
});

test('media helpers: fake pointers, copy-free views, unaligned copies, offsets', () => {
  const a = audioBuffer(new Int16Array(3));
  const b = audioBuffer(new Int16Array(480));
  const c = audioBuffer(new Int16Array(0));
  assert.ok(a[0] >= 0x1000_0000_0000n);
  assert.equal(a[0] % 8n, 0n);
  assert.ok(b[0] >= a[0] + 8n, 'ranges do not overlap');
  assert.ok(c[0] >= b[0] + 960n);
  assert.notEqual(allocatePointer(1), allocatePointer(1));

  const samples = Int16Array.from([1, -2, 3, -4]);
  const [ptr, bytes] = audioBuffer(samples);
  assert.equal(bytes.buffer, samples.buffer, 'audioBuffer does not copy');
  const info = { dataPtr: ptr, numChannels: 2, samplesPerChannel: 2 };
  const view = audioSamples(new Map([[ptr, bytes]]), info);
  assert.deepEqual([...view], [1, -2, 3, -4]);
  assert.equal(view.buffer, samples.buffer, 'aligned: a view');

  const odd = new Uint8Array(9);
  odd.set(bytes, 1);
  const copy = audioSamples(new Map([[ptr, odd.subarray(1)]]), info);
  assert.deepEqual([...copy], [1, -2, 3, -4]);
  assert.notEqual(copy.buffer, odd.buffer, 'unaligned: a copy');

  // A pointer inside a larger buffer.
  assert.deepEqual([...bufferAt(new Map([[0x100n, Uint8Array.from([9, 8, 7, 6])]]), 0x102n, 2)], [7, 6]);
  assert.throws(() => audioSamples(new Map(), info), RangeError);
  assert.throws(() => audioSamples(new Map([[ptr, bytes.subarray(0, 4)]]), info), RangeError);
});

test('the client never loads native code', () => {
  const loaded = Object.keys(require.cache);
  assert.deepEqual(
    loaded.filter((f) => f.endsWith('.node')),
    [],
  );
  assert.ok(!loaded.some((f) => /rtc-ffi-bindings[\\/](index|native)\.js$/.test(f)));
  assert.ok(!loaded.some((f) => /koffi/.test(f)));
});
