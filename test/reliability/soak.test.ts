// Soak: 50 sessions, each with an audio source → track → stream, capturing 10 ms frames at real
// time for 2 minutes (10 in long mode). Each frame carries its index, so a frame lost without an
// EventsDropped notice is seen; the broker's event latency p99 is taken per interval, and its RSS.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AudioFrameBufferInfo, AudioSourceType, AudioStreamType, CaptureAudioFrameRequest, NewAudioSourceRequest, NewAudioStreamRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { CreateAudioTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { BrokerClient } from '../../client/broker_client.js';
import { audioBuffer, audioSamples } from '../../client/media.js';
import { ffi } from '../helpers/assertions.js';
import { MODE, byMode, histogram, quantileBetween, report, rssBytes, startProbedBroker, type ProbedBroker } from './probe.js';

const SESSIONS = Number(process.env.RELIABILITY_SOAK_SESSIONS ?? 50);
const SECONDS = Number(process.env.RELIABILITY_SOAK_SECONDS ?? byMode(120, 600));
const INTERVAL_S = byMode(15, 60);
// p99 may move with the machine's other load; a trend beyond this factor is a regression.
const P99_FACTOR = 10;
const P99_FLOOR_S = 0.05;

interface Stream {
  client: BrokerClient;
  source: bigint;
  stream: bigint;
  sent: number;
  received: number; // frames carrying a captured index
  lostUnreported: number;
  lastIndex: number;
  dropped: number; // EventsDropped counts
}

let broker: ProbedBroker;
before(async () => {
  broker = await startProbedBroker();
});
after(async () => {
  await broker.stop();
});

async function open(id: number): Promise<Stream> {
  const client = await BrokerClient.connect(broker.address, { clientName: `soak-${id}` });
  const call = async (message: Parameters<typeof ffi>[0]) => (await client.request(ffi(message))).response.message;
  const src = await call({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) });
  assert.equal(src.case, 'newAudioSource');
  const source = src.value.source!.handle!.id!;
  const trk = await call({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: `s${id}`, sourceHandle: source }) });
  assert.equal(trk.case, 'createAudioTrack');
  const str = await call({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: trk.value.track!.handle!.id!, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: 48000, numChannels: 1 }) });
  assert.equal(str.case, 'newAudioStream');
  const s: Stream = { client, source, stream: str.value.stream!.handle!.id!, sent: 0, received: 0, lostUnreported: 0, lastIndex: 0, dropped: 0 };
  client.on('notice', (n) => {
    if (n.notice.case === 'eventsDropped') s.dropped += Number(n.notice.value.count);
  });
  client.on('event', ({ event, buffers }) => {
    const m = event.message;
    if (m.case !== 'audioStreamEvent' || m.value.message.case !== 'frameReceived') return;
    const samples = audioSamples(buffers, m.value.message.value.frame!.info!);
    const index = samples[0]!;
    if (index === 0) return; // silence the stream inserted while the source ran dry
    s.received++;
    // Frame indices go up by one; a jump not covered by dropped events is a lost frame.
    if (s.lastIndex !== 0 && index !== s.lastIndex + 1) s.lostUnreported += Math.max(0, ((index - s.lastIndex - 1 + 32767) % 32767));
    s.lastIndex = index;
  });
  return s;
}

// Not yet in the quick CI run: in the first runs most received frames were silence the streams
// inserted (the 50 sessions' captures, issued from this one test process, do not keep the sources
// fed), so the lost-frame check measures the load generator, not the broker. Run it with
// RELIABILITY_SOAK=1 or in long mode while that is fixed.
const RUN = MODE === 'long' || process.env.RELIABILITY_SOAK === '1';

test(`soak: ${SESSIONS} sessions with audio streams for ${SECONDS} s (${MODE} mode)`, { skip: RUN ? false : 'unfinished: set RELIABILITY_SOAK=1 (see the comment above)' }, async () => {
  const streams: Stream[] = [];
  for (let i = 0; i < SESSIONS; i++) streams.push(await open(i));
  const pid = broker.proc.pid!;
  const rssStart = rssBytes(pid);
  const intervals: { at: number; p99ms: number; rssMiB: number }[] = [];
  let lastHist = await histogram(broker.metricsUrl, 'lkb_event_latency_seconds');
  const started = Date.now();
  let due = 0;
  let failures = 0;
  let nextInterval = started + INTERVAL_S * 1000;
  while (Date.now() - started < SECONDS * 1000) {
    const frames = Math.floor((Date.now() - started) / 10);
    for (; due < frames; due++) {
      for (const s of streams) {
        s.sent++;
        const [ptr, bytes] = audioBuffer(new Int16Array(480).fill(((s.sent - 1) % 32767) + 1));
        s.client
          .request(ffi({ case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: s.source, buffer: new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }) }) }), [[ptr, bytes]])
          .catch(() => failures++);
      }
    }
    if (Date.now() >= nextInterval) {
      nextInterval += INTERVAL_S * 1000;
      const hist = await histogram(broker.metricsUrl, 'lkb_event_latency_seconds');
      intervals.push({ at: Math.round((Date.now() - started) / 1000), p99ms: quantileBetween(lastHist, hist, 0.99) * 1000, rssMiB: Math.round(rssBytes(pid) / 104857.6) / 10 });
      lastHist = hist;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, 1500)); // the last frames through the sources' queues
  const sent = streams.reduce((a, s) => a + s.sent, 0);
  const received = streams.reduce((a, s) => a + s.received, 0);
  const dropped = streams.reduce((a, s) => a + s.dropped, 0);
  const lostUnreported = streams.reduce((a, s) => a + s.lostUnreported, 0);
  const p99s = intervals.map((i) => i.p99ms).filter((v) => Number.isFinite(v));
  report('soak', {
    sessions: SESSIONS,
    seconds: SECONDS,
    framesSent: sent,
    framesReceived: received,
    eventsDroppedReported: dropped,
    framesLostUnreported: lostUnreported,
    requestFailures: failures,
    rssMiB: { start: Math.round(rssStart / 104857.6) / 10, end: Math.round(rssBytes(pid) / 104857.6) / 10 },
    intervals,
  });
  for (const s of streams) await s.client.close();
  assert.equal(failures, 0, 'every capture was answered');
  assert.ok(lostUnreported <= dropped, `${lostUnreported} frames lost beyond the ${dropped} reported dropped`);
  assert.ok(received >= sent * 0.9 - dropped, `received ${received} of ${sent} frames (${dropped} reported dropped)`);
  assert.ok(p99s.length >= 2, 'p99 measured over several intervals');
  const first = Math.max(p99s[0]!, P99_FLOOR_S * 1000);
  assert.ok(p99s.every((p) => p <= first * P99_FACTOR), `event latency p99 per interval stays within ${P99_FACTOR}x of the first: ${p99s.join(', ')} ms`);
  assert.equal(broker.proc.exitCode, null);
});
