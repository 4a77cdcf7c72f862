// A worker process for the tests: through the broker it creates audio sources → tracks → audio
// streams, captures a signal that names its stream into each source at real-time pace, and checks
// what comes back. Prints JSON lines: {"ready":…} after set-up, {"progress":…} each second, and
// {"report":…} at the end (or runs until killed with --seconds 0).
//
// The signal: sample n of stream `id` is id*1000 + (n mod 1000) + 1, never 0, so inserted silence
// (zeros) is told apart, and a frame of another stream is caught by its id.
import { AudioSourceType, AudioStreamType, NewAudioSourceRequest, NewAudioStreamRequest, CaptureAudioFrameRequest, AudioFrameBufferInfo } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { CreateAudioTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { BrokerClient } from '../../client/broker_client.js';
import { audioBuffer, audioSamples } from '../../client/media.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const address = args.get('address')!;
const streams = Number(args.get('streams') ?? 2);
const firstId = Number(args.get('first-id') ?? 1);
const seconds = Number(args.get('seconds') ?? 2);
// Sessions (BrokerClients) in this process, each with `streams` streams.
const sessionCount = Number(args.get('sessions') ?? 1);

const SAMPLE_RATE = 48000;
// Capture and stream frame size (--frame-ms, default 10 ms, as agents use).
const FRAME_MS = Number(args.get('frame-ms') ?? 10);
const FRAME = (SAMPLE_RATE / 1000) * FRAME_MS;
// The pacing timer: each tick sends what is due. A quarter frame keeps captures on time without
// waking the process more often than needed (many workers share the machine in the soak).
const TICK_MS = Math.max(5, Math.floor(FRAME_MS / 4));

interface StreamState {
  id: number;
  source: bigint;
  track: bigint;
  stream: bigint;
  captured: number; // samples sent
  frames: number;
  samples: number; // non-silent samples received
  silent: number;
  expectNext: number; // next (n mod 1000) expected
  outOfOrder: number;
  foreign: number;
}

const out = (o: unknown) => process.stdout.write(JSON.stringify(o, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');

interface Session {
  client: BrokerClient;
  states: StreamState[];
  answeredAsync: Set<bigint>;
  counters: { seqViolations: number; firstViolation?: string; callbacksBeforeResponse: number; foreignEvents: number; callbacks: number; logsEvents: number; eventsDropped: number };
}

/** One session with `streams` source → track → stream sets, its events checked as they come. */
async function openSession(index: number): Promise<Session> {
  const client = await BrokerClient.connect(address, { clientName: 'audio-worker' });
  const states: StreamState[] = [];
  const byStream = new Map<bigint, StreamState>();
  const answeredAsync = new Set<bigint>();
  const counters: Session['counters'] = { seqViolations: 0, callbacksBeforeResponse: 0, foreignEvents: 0, callbacks: 0, logsEvents: 0, eventsDropped: 0 };
  let lastSeq = 0n;
  client.on('notice', (n) => {
    if (n.notice.case === 'eventsDropped') counters.eventsDropped += Number(n.notice.value.count);
  });

  client.on('event', ({ seq, event, buffers }) => {
    if (seq <= lastSeq) {
      counters.seqViolations++;
      counters.firstViolation ??= `seq ${seq} after ${lastSeq} (${event.message.case})`;
    }
    lastSeq = seq;
    const m = event.message;
    if (m.case === 'logs') counters.logsEvents++;
    if (m.case === 'captureAudioFrame') {
      counters.callbacks++;
      if (!answeredAsync.has(m.value.asyncId!)) counters.callbacksBeforeResponse++;
      return;
    }
    if (m.case !== 'audioStreamEvent') return;
    const st = byStream.get(m.value.streamHandle!);
    if (st === undefined) {
      counters.foreignEvents++;
      return;
    }
    if (m.value.message.case !== 'frameReceived') return;
    const info = m.value.message.value.frame!.info!;
    const samples = audioSamples(buffers, info);
    st.frames++;
    for (const s of samples) {
      if (s === 0) {
        st.silent++;
        continue;
      }
      const id = Math.floor((s - 1) / 1000);
      if (id !== st.id) {
        st.foreign++;
        continue;
      }
      const phase = (s - 1) % 1000;
      if (phase !== st.expectNext) st.outOfOrder++;
      st.expectNext = (phase + 1) % 1000;
      st.samples++;
    }
  });

  const call = async (message: FfiRequest['message']) => (await client.request(new FfiRequest({ message }))).response.message;
  for (let i = 0; i < streams; i++) {
    const src = await call({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: SAMPLE_RATE, numChannels: 1, queueSizeMs: 1000 }) });
    if (src.case !== 'newAudioSource') throw new Error('no source');
    const source = src.value.source!.handle!.id!;
    const trk = await call({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: `t${i}`, sourceHandle: source }) });
    if (trk.case !== 'createAudioTrack') throw new Error('no track');
    const track = trk.value.track!.handle!.id!;
    // A 5 s stream queue: the library's default is small enough that a few ms of CPU starvation on a
    // loaded 2-core machine drops frames inside the library, before the broker sees them; 1 s still
    // did in the soak (50 sessions on 2 cores: 54 frames gone inside the library, none by the broker,
    // on main's code as on this one), and the gap counted as samples out of order.
    const str = await call({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: track, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: SAMPLE_RATE, numChannels: 1, frameSizeMs: FRAME_MS, queueSizeFrames: 5000 / FRAME_MS }) });
    if (str.case !== 'newAudioStream') throw new Error('no stream');
    const stream = str.value.stream!.handle!.id!;
    // Stream ids (the signal's) run on across this process's sessions.
    const st: StreamState = { id: firstId + index * streams + i, source, track, stream, captured: 0, frames: 0, samples: 0, silent: 0, expectNext: 0, outOfOrder: 0, foreign: 0 };
    states.push(st);
    byStream.set(stream, st);
  }
  return { client, states, answeredAsync, counters };
}

async function main(): Promise<void> {
  const sessions: Session[] = [];
  for (let i = 0; i < sessionCount; i++) sessions.push(await openSession(i));
  const states = sessions.flatMap((s) => s.states);
  const sessionOf = new Map(sessions.flatMap((session) => session.states.map((st) => [st, session] as const)));
  // --start-on-signal: capture only once SIGUSR2 comes, so many workers started one after another
  // begin together (the first would otherwise stream through the others' start-up). Listened for
  // before "ready" is printed: the signal may follow it at once.
  const startSignal = args.get('start-on-signal') === '1' ? new Promise((resolve) => process.once('SIGUSR2', resolve)) : undefined;
  out({
    ready: {
      pid: process.pid,
      sessionId: sessions[0]!.client.sessionId,
      sessionIds: sessions.map((s) => s.client.sessionId),
      handles: states.flatMap((s) => [s.source, s.track, s.stream]),
      mediaLane: sessions[0]!.client.mediaLane,
    },
  });
  await startSignal;

  const capture = async (st: StreamState) => {
    const samples = new Int16Array(FRAME);
    for (let n = 0; n < FRAME; n++) samples[n] = st.id * 1000 + ((st.captured + n) % 1000) + 1;
    st.captured += FRAME;
    const [ptr, bytes] = audioBuffer(samples);
    const info = new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: SAMPLE_RATE, samplesPerChannel: FRAME });
    const session = sessionOf.get(st)!;
    const { response } = await session.client.request(new FfiRequest({ message: { case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: st.source, buffer: info }) } }), [[ptr, bytes]]);
    if (response.message.case === 'captureAudioFrame') session.answeredAsync.add(response.message.value.asyncId!);
  };

  const started = Date.now();
  let sent = 0;
  let lastProgress = started;
  await new Promise<void>((resolve, reject) => {
    const tick = () => {
      const elapsed = Date.now() - started;
      if (seconds > 0 && elapsed >= seconds * 1000) return resolve();
      const due = Math.floor(elapsed / FRAME_MS) + 1;
      const pending: Promise<void>[] = [];
      for (; sent < due; sent++) for (const st of states) pending.push(capture(st));
      Promise.all(pending).catch(reject);
      if (Date.now() - lastProgress >= 1000) {
        lastProgress = Date.now();
        out({ progress: { frames: states.reduce((a, s) => a + s.frames, 0) } });
      }
      setTimeout(tick, TICK_MS);
    };
    tick();
  });
  // Let the last captured frames through the sources' queues (all back, or at most 2 s).
  for (const deadline = Date.now() + 2000; Date.now() < deadline && states.some((st) => st.samples < st.captured); ) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const total = (key: 'seqViolations' | 'callbacksBeforeResponse' | 'callbacks' | 'foreignEvents' | 'logsEvents' | 'eventsDropped') =>
    sessions.reduce((a, s) => a + s.counters[key], 0);
  out({
    report: {
      streams: states.map(({ id, frames, samples, silent, outOfOrder, foreign, captured }) => ({ id, frames, samples, silent, outOfOrder, foreign, captured })),
      seqViolations: total('seqViolations'),
      firstViolation: sessions.find((s) => s.counters.firstViolation !== undefined)?.counters.firstViolation,
      callbacksBeforeResponse: total('callbacksBeforeResponse'),
      callbacks: total('callbacks'),
      foreignEvents: total('foreignEvents'),
      logsEvents: total('logsEvents'),
      eventsDropped: total('eventsDropped'),
      // Buffers that crossed in the media lane (none without one).
      lanePlaced: sessions.reduce((a, s) => a + (s.client.mediaLaneCounters?.placed ?? 0), 0),
      laneRead: sessions.reduce((a, s) => a + (s.client.mediaLaneCounters?.read ?? 0), 0),
    },
  });
  await Promise.all(sessions.map((s) => s.client.close()));
}

main().catch((err) => {
  out({ error: String(err?.stack ?? err) });
  process.exit(1);
});
