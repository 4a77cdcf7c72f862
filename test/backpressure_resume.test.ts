// A worker that stops reading costs only itself; a session whose stream breaks keeps its handles
// for the grace period and resumes where it was.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { ApmProcessStreamRequest, AudioSourceType, AudioStreamType, NewApmRequest, NewAudioSourceRequest, NewAudioStreamRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { CreateAudioTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { BrokerClient } from '../client/broker_client.js';
import { BrokerError } from '../client/broker_error.js';
import { audioBuffer } from '../client/media.js';
import { ffi } from './helpers/assertions.js';
import { WORKERS, spawnWorker, startBroker, waitFor } from './helpers/processes.js';

interface SlowReport {
  frames: number;
  gaps: string;
  dropped: string;
  notices: { count: string; firstSeq: string }[];
  backwards: number;
}
interface AudioReport {
  streams: { id: number; frames: number; samples: number; outOfOrder: number; foreign: number; captured: number }[];
  seqViolations: number;
  firstViolation?: string;
}

/** Breaks the client's stream as a network failure would: the broker sees it cancelled. */
function breakStream(client: BrokerClient): void {
  (client as unknown as { call: ClientDuplexStream<unknown, unknown> }).call.cancel();
}

async function audioChain(client: BrokerClient): Promise<{ source: bigint; stream: bigint }> {
  const src = await client.request(ffi({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) }));
  assert.equal(src.response.message.case, 'newAudioSource');
  const source = src.response.message.value.source!.handle!.id!;
  const trk = await client.request(ffi({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 't', sourceHandle: source }) }));
  assert.equal(trk.response.message.case, 'createAudioTrack');
  const str = await client.request(ffi({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: trk.response.message.value.track!.handle!.id!, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: 48000, numChannels: 1 }) }));
  assert.equal(str.response.message.case, 'newAudioStream');
  return { source, stream: str.response.message.value.stream!.handle!.id! };
}

test('a worker that stops reading loses only its own media frames, each reported; another worker loses nothing', async () => {
  const broker = await startBroker(['--session-buffer', '256k']);
  try {
    const healthy = spawnWorker(path.join(WORKERS, 'audio_worker.js'), ['--address', broker.address, '--streams', '2', '--first-id', '21', '--seconds', '8']);
    await healthy.next('ready');
    // 5 s: the slow reader has a media lane, whose ring (1 MiB) and the HTTP/2 window, full of
    // small lane events, hold about 2.5 s of its four streams before the broker sheds.
    const slow = spawnWorker(path.join(WORKERS, 'slow_reader.js'), ['--address', broker.address, '--streams', '4', '--pause-ms', '5000']);
    const paused = await slow.next<{ sessionId: string }>('paused');
    await waitFor(
      async () => ((await broker.info()).sessions.find((s) => s.sessionId === paused.sessionId)?.droppedEvents ?? 0n) > 0n,
      6000,
      "the stalled session's frames to be dropped",
    );
    const slowReport = await slow.next<SlowReport>('report');
    assert.ok(BigInt(slowReport.dropped) > 0n, 'EventsDropped notices reached the worker once it read again');
    assert.equal(slowReport.gaps, slowReport.dropped, 'every gap in seq is one reported by a notice');
    assert.equal(slowReport.backwards, 0, 'seq only goes up');
    const healthyReport = await healthy.next<AudioReport>('report');
    assert.equal(healthyReport.seqViolations, 0, `the healthy worker's seq went back: ${healthyReport.firstViolation}`);
    for (const s of healthyReport.streams) {
      assert.equal(s.outOfOrder, 0);
      assert.equal(s.foreign, 0);
      assert.ok(s.samples >= s.captured * 0.9, `healthy stream ${s.id}: ${s.samples} of ${s.captured} samples came back`);
    }
    const healthySession = broker.logs.filter((r) => r.msg === 'session is not reading fast enough: media frames dropped').map((r) => r.session);
    assert.ok(healthySession.every((id) => id === paused.sessionId), 'only the stalled session dropped frames');
    await Promise.all([healthy.exited, slow.exited]);
  } finally {
    await broker.stop();
  }
});

test('a broken stream resumes within the grace period: same session, same handles, events continue after the last one seen', async () => {
  const broker = await startBroker();
  try {
    // This client must not resume by itself: the test resumes the session with a second one.
    const first = await BrokerClient.connect(broker.address, { clientName: 'resumer', resumeWindowMs: 0 });
    const { source, stream } = await audioChain(first);
    let lastSeq = 0n;
    first.on('event', (e) => (lastSeq = e.seq));
    await waitFor(() => lastSeq > 20n, 3000, 'frames on the first stream');
    breakStream(first);
    await waitFor(async () => (await broker.info()).sessions.some((s) => s.sessionId === first.sessionId && !s.connected), 2000, 'the session to wait for a resume');
    const info = await broker.info();
    assert.equal(info.sessions.find((s) => s.sessionId === first.sessionId)?.ownedHandles, 3n, 'its handles are kept');
    await new Promise((r) => setTimeout(r, 300)); // frames keep coming while it is away

    const seqs: bigint[] = [];
    const second = await BrokerClient.connect(broker.address, { resumeToken: first.resumeToken, lastSeq });
    second.on('event', (e) => {
      if (e.event.message.case === 'audioStreamEvent' && e.event.message.value.streamHandle === stream) seqs.push(e.seq);
    });
    assert.equal(second.resumed, true);
    assert.equal(second.sessionId, first.sessionId);
    await waitFor(() => seqs.length > 40, 3000, 'frames on the resumed stream');
    assert.equal(seqs[0], lastSeq + 1n, 'the first event after the resume is the one after the last seen');
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1]! + 1n, 'no gap');
    // The handles are still this session's: a request naming one works.
    const again = await second.request(ffi({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 't2', sourceHandle: source }) }));
    assert.equal(again.response.message.case, 'createAudioTrack');
    await second.close();
    await waitFor(async () => (await broker.info()).ownedHandles === 0n, 2000, 'a clean close releases everything');
  } finally {
    await broker.stop();
  }
});

test('past the grace period the session and its handles are released, and the token no longer resumes', async () => {
  const broker = await startBroker(['--resume-grace', '500']);
  try {
    const first = await BrokerClient.connect(broker.address, { resumeWindowMs: 0 });
    await audioChain(first);
    breakStream(first);
    await waitFor(async () => (await broker.info()).ownedHandles === 0n && (await broker.info()).sessions.length === 0, 3000, 'release after 500 ms');
    await assert.rejects(BrokerClient.connect(broker.address, { resumeToken: first.resumeToken }), (err: unknown) => err instanceof BrokerError && /resume_token names no session/.test(err.message));
  } finally {
    await broker.stop();
  }
});

test('the TypeScript client resumes by itself after a transient break: pending requests fail, events go on without a gap', async () => {
  const broker = await startBroker();
  try {
    const client = await BrokerClient.connect(broker.address, { clientName: 'auto-resume' });
    const { stream } = await audioChain(client);
    const seqs: bigint[] = [];
    client.on('event', (e) => {
      if (e.event.message.case === 'audioStreamEvent' && e.event.message.value.streamHandle === stream) seqs.push(e.seq);
    });
    await waitFor(() => seqs.length > 20, 3000, 'frames before the break');
    const resumed = new Promise<void>((resolve) => client.once('resumed', resolve));
    const sessionId = client.sessionId;
    breakStream(client);
    await resumed;
    assert.equal(client.sessionId, sessionId, 'the same session');
    const before = seqs.length;
    await waitFor(() => seqs.length > before + 40, 3000, 'frames after the resume');
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1]! + 1n, `no gap or repeat at ${seqs[i - 1]} → ${seqs[i]}`);
    const { response } = await client.request(ffi({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 100 }) }));
    assert.equal(response.message.case, 'newAudioSource', 'requests work on the resumed session');
    await client.close();
  } finally {
    await broker.stop();
  }
});

test('what may not be dropped, past the hard cap (4x --session-buffer), ends that session with RESOURCE_EXHAUSTED and releases its handles', async () => {
  const broker = await startBroker(['--session-buffer', '64k']);
  try {
    const client = await BrokerClient.connect(broker.address, { resumeWindowMs: 0 });
    const closed = new Promise<BrokerError | undefined>((resolve) => client.once('close', resolve));
    const created = await client.request(ffi({ case: 'newApm', value: new NewApmRequest({ echoCancellerEnabled: false, gainControllerEnabled: false, highPassFilterEnabled: true, noiseSuppressionEnabled: false }) }));
    assert.equal(created.response.message.case, 'newApm');
    const apm = created.response.message.value.apm!.handle!.id!;
    // Stop reading, and keep asking: every APM answer carries the 960 processed bytes, and answers
    // may not be dropped, so they pile up in the broker for this session.
    (client as unknown as { call: ClientDuplexStream<unknown, unknown> }).call.pause();
    const [ptr, bytes] = audioBuffer(new Int16Array(480));
    const requests: Promise<unknown>[] = [];
    for (let i = 0; i < 8000; i++) {
      requests.push(client.request(ffi({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: apm, dataPtr: ptr, size: 960, sampleRate: 48000, numChannels: 1 }) }), [[ptr, bytes]]).catch(() => undefined));
    }
    await waitFor(async () => (await broker.info()).sessions.length === 0, 20000, 'the overflowing session to be ended');
    assert.equal((await broker.info()).ownedHandles, 0n, 'its handles were released');
    assert.ok(broker.logs.some((r) => r.msg === 'session fell too far behind on what cannot be dropped; ending it'));
    (client as unknown as { call: ClientDuplexStream<unknown, unknown> }).call.resume();
    const reason = await closed;
    assert.equal(reason?.grpcCode, grpc.status.RESOURCE_EXHAUSTED, String(reason));
    await Promise.all(requests);
  } finally {
    await broker.stop();
  }
});
