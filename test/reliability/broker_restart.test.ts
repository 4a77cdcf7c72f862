// The broker SIGKILLed under traffic, then a new one started on the same socket: the client tells
// the application at once (pending and new requests reject with UNAVAILABLE naming the address,
// 'sessionLost'), never hangs, reconnects with backoff once the new broker listens, and starts a
// new session in which the old handles are not valid. The stale socket file does not stop the new
// broker.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { AudioFrameBufferInfo, AudioSourceType, CaptureAudioFrameRequest, NewAudioSourceRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { BrokerClient } from '../../client/broker_client.js';
import { BrokerError } from '../../client/broker_error.js';
import { audioBuffer } from '../../client/media.js';
import { Error_Code } from '../../proto/gen/ffi_broker_pb.js';
import { expectRefusal, ffi } from '../helpers/assertions.js';
import { startBroker, tempDir, withTimeout, type BrokerProcess } from '../helpers/processes.js';
import { MODE, byMode, report } from './probe.js';

const RESTARTS = byMode(3, 10);
// Generous on a loaded 2-core machine: the point is "promptly, never hangs".
const LOST_WITHIN_MS = 5000;
const RECONNECT_WITHIN_MS = 10000;

const brokers: BrokerProcess[] = [];
after(async () => {
  for (const b of brokers) await b.stop();
});

const newSource = async (client: BrokerClient): Promise<bigint> => {
  const { response } = await client.request(ffi({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) }));
  assert.equal(response.message.case, 'newAudioSource');
  return response.message.value.source!.handle!.id!;
};

test(`broker SIGKILLed under traffic and restarted ${RESTARTS} times: the client reports it promptly and reconnects to a new session (${MODE} mode)`, async () => {
  const address = `unix://${path.join(tempDir(), 'broker.sock')}`;
  brokers.push(await startBroker([], {}, address));
  const client = await BrokerClient.connect(address, { clientName: 'restart', reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });
  const lost: BrokerError[] = [];
  client.on('sessionLost', (err) => lost.push(err));
  const figures: { lostAfterMs: number; pendingRejectedAfterMs: number; reconnectedAfterListeningMs: number; attempts: number }[] = [];
  const [ptr, bytes] = audioBuffer(new Int16Array(480).fill(7));
  for (let round = 0; round < RESTARTS; round++) {
    const source = await newSource(client);
    const oldSession = client.sessionId;
    // Traffic: captures back to back until the broker dies.
    let pendingError: { err: unknown; at: number } | undefined;
    const traffic = (async () => {
      for (;;) {
        try {
          await client.request(ffi({ case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: source, buffer: new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }) }) }), [[ptr, bytes]]);
        } catch (err) {
          pendingError = { err, at: Date.now() };
          return;
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const lostEvent = new Promise<number>((resolve) => client.once('sessionLost', () => resolve(Date.now())));
    const killedAt = Date.now();
    brokers[brokers.length - 1]!.proc.kill('SIGKILL');
    const lostAt = await withTimeout(lostEvent, LOST_WITHIN_MS, `no sessionLost within ${LOST_WITHIN_MS} ms of the SIGKILL`);
    await withTimeout(traffic, LOST_WITHIN_MS, 'a pending request hung after the SIGKILL');
    assert.ok(pendingError!.err instanceof BrokerError && pendingError!.err.codeName === 'UNAVAILABLE', String(pendingError!.err));
    // A request while no broker runs: rejected at once, saying what happened and what to do.
    const refusedAt = Date.now();
    const err = await expectRefusal(newSource(client), Error_Code.UNAVAILABLE, /no session with the broker at unix:\/\/.*reconnecting with backoff.*'reconnected'/);
    assert.ok(Date.now() - refusedAt < 1000, 'rejected at once');
    assert.match(lost[lost.length - 1]!.detail, /is gone|broke|NOT_FOUND/, err.detail);
    // The dead broker's socket file is still there; a new broker replaces it.
    assert.ok(fs.existsSync(address.slice('unix://'.length)), 'SIGKILL left the socket file');
    await new Promise((r) => setTimeout(r, 300));
    const reconnected = new Promise<{ at: number; attempts: number }>((resolve) => client.once('reconnected', ({ attempts }) => resolve({ at: Date.now(), attempts })));
    const next = await startBroker([], {}, address);
    brokers.push(next);
    const listeningAt = Date.now();
    const { at, attempts } = await withTimeout(reconnected, RECONNECT_WITHIN_MS, 'no reconnect to the new broker');
    assert.ok(client.isOpen);
    assert.notEqual(client.sessionId, oldSession, 'a new session');
    // The old session's handle means nothing to the new one.
    await expectRefusal(client.request(ffi({ case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: source, buffer: new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }) }) }), [[ptr, bytes]]), Error_Code.PERMISSION_DENIED, /does not own/);
    figures.push({ lostAfterMs: lostAt - killedAt, pendingRejectedAfterMs: pendingError!.at - killedAt, reconnectedAfterListeningMs: at - listeningAt, attempts });
  }
  report('broker_restart', { restarts: RESTARTS, client: 'typescript', rounds: figures });
  assert.equal(lost.length, RESTARTS);
  await client.close();
});
