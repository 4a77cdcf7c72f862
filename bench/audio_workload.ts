// The audio workload every audio scenario runs, on any FfiPath: per stream NewAudioSource →
// CreateAudioTrack → NewAudioStream (no LiveKit server), a ramp captured in 10 ms frames at
// real-time pace into every source, and the frames received back from the streams.
//
// Every sample names its own index (a ramp over all 65535 non-zero int16 values), so a received
// frame tells which capture request its samples came from, even when the stream re-chunks frames
// or inserts silence. Latency of a frame = its receive time − the send time of the capture request
// holding its last non-silent sample (the frame could not exist before that sample was sent).
import { AudioFrameBufferInfo, AudioSourceType, AudioStreamType, CaptureAudioFrameRequest, NewAudioSourceRequest, NewAudioStreamRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { CreateAudioTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import type { FfiMessage, FfiPath } from './ffi_path.js';
import { nowMs, quantiles, sleep, summarize, type Summary } from './stats.js';

const SAMPLE_RATE = 48000;
const FRAME = 480; // samples per capture: 10 ms
const FRAME_MS = 10;
const PERIOD = 65535; // distinct non-zero int16 values: the ramp repeats every 1.37 s
const TICK_MS = 2; // pacing timer; each tick sends every frame that is due by now

/** Ramp value of sample index n: never 0, so inserted silence is told apart. */
function rampValue(n: number): number {
  const p = n % PERIOD;
  return p < 32767 ? p + 1 : p - PERIOD;
}

function rampPhase(value: number): number {
  return value > 0 ? value - 1 : value + PERIOD;
}

interface StreamState {
  path: number;
  source: bigint;
  /** undefined: a capture-only source (an agent's TTS output), no stream reads it back. */
  stream: bigint | undefined;
  /** Send time (ms) of capture k, which holds samples [k*FRAME, (k+1)*FRAME). */
  sentAt: Float64Array;
  captures: number;
  /** Samples received per capture. */
  received: Uint16Array;
  /** Index after the last sample received: samples come out in order. */
  nextIndex: number;
  frames: number;
  silentFrames: number;
  /** Frames whose samples decode to captures not sent yet: would mean the index decoding is wrong. */
  undecodable: number;
  /** Samples whose value lies behind the stream's position (repeated or altered samples). */
  outOfSequence: number;
}

export interface AudioRun {
  streams: number;
  measured_s: number;
  frames_captured: number;
  /** Frames with at least one non-silent sample of a capture sent in the measured window. */
  frames_received: number;
  /** Measured captures (10 ms each) none of whose samples came back. */
  frames_lost: number;
  /** Measured captures of which only part came back. */
  frames_partial: number;
  /** All-silent frames the streams inserted (source under-run) while measuring. */
  silent_frames: number;
  capture_errors: number;
  capture_error?: string;
  undecodable_frames: number;
  out_of_sequence_samples: number;
  latency_ms: Summary;
  latency_quantiles_ms: [number, number | null][];
  /** p50 latency of each measured second, in order: shows whether latency creeps up. */
  latency_p50_ms_by_second: (number | null)[];
  /** Per path (session): its own p99, for the session-scaling scenario. */
  latency_p99_ms_by_path: (number | null)[];
  /** Round trip of the CaptureAudioFrame request itself (send → FfiResponse), for scale. */
  capture_request_ms: Summary;
  /** With captureOnlyPerPath: the capture-only sources and the frames captured into them while measuring. */
  capture_only_sources?: number;
  capture_only_frames_captured?: number;
  /** Captures sent inside the measured window by the clock, at most the window's worth per source; every source (capture-only ones too). */
  captures_in_window: number;
  /** With keepLatencies: every measured frame's latency, in receive order. */
  latencies_ms?: number[];
}

export interface AudioOptions {
  streamsPerPath: number;
  queueSizeMs: number;
  warmupS: number;
  measureS: number;
  /** Called when the measured window starts and ends (CPU and RSS sampling). */
  onMeasure?: (phase: 'start' | 'end') => void;
  /** Per path, sources captured into at the same pace with no stream (an agent's TTS output). */
  captureOnlyPerPath?: number;
  /** Awaited once every stream is open, before the first capture. */
  beforeStart?: () => Promise<void>;
  /** Return every measured frame's latency (latencies_ms). */
  keepLatencies?: boolean;
}

async function openStream(path: FfiPath, pathIndex: number, name: string, queueSizeMs: number, totalFrames: number, withStream = true): Promise<StreamState> {
  const expect = async <C extends NonNullable<FfiMessage>['case']>(message: FfiMessage, want: C) => {
    const res = await path.call(message);
    if (res.case !== want) throw new Error(`${want} answered ${res.case}`);
    return res as Extract<typeof res, { case: C }>;
  };
  const src = await expect({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: SAMPLE_RATE, numChannels: 1, queueSizeMs }) }, 'newAudioSource');
  const source = src.value.source!.handle!.id!;
  const trk = await expect({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name, sourceHandle: source }) }, 'createAudioTrack');
  const str = withStream
    ? await expect(
        { case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: trk.value.track!.handle!.id!, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: SAMPLE_RATE, numChannels: 1 }) },
        'newAudioStream',
      )
    : undefined;
  return {
    path: pathIndex,
    source,
    stream: str?.value.stream!.handle!.id!,
    sentAt: new Float64Array(totalFrames),
    captures: 0,
    received: new Uint16Array(totalFrames),
    nextIndex: 0,
    frames: 0,
    silentFrames: 0,
    undecodable: 0,
    outOfSequence: 0,
  };
}

export async function runAudio(paths: FfiPath[], opts: AudioOptions): Promise<AudioRun> {
  const { streamsPerPath, queueSizeMs, warmupS, measureS } = opts;
  const totalFrames = Math.round(((warmupS + measureS) * 1000) / FRAME_MS);
  const firstMeasured = Math.round((warmupS * 1000) / FRAME_MS);
  const states: StreamState[] = [];
  const outbound: StreamState[] = [];
  const byStream = new Map<bigint, StreamState>();
  for (const [p, path] of paths.entries()) {
    for (let i = 0; i < streamsPerPath; i++) {
      const st = await openStream(path, p, `bench${p}-${i}`, queueSizeMs, totalFrames);
      states.push(st);
      byStream.set(st.stream!, st);
    }
    for (let i = 0; i < (opts.captureOnlyPerPath ?? 0); i++) outbound.push(await openStream(path, p, `bench${p}-out${i}`, queueSizeMs, totalFrames, false));
  }
  await opts.beforeStart?.();

  const latencies: number[] = [];
  const byPath: number[][] = paths.map(() => []);
  const bySecond: number[][] = Array.from({ length: Math.ceil(measureS) }, () => []);
  let captureErrors = 0;
  let captureError: string | undefined;
  // Silent frames count as under-runs only while measuring: none before a stream's first sample,
  // and once capturing has ended the stream plays silence by design.
  let phase: 'warmup' | 'measure' | 'tail' = 'warmup';
  for (const path of paths) {
    path.onEvent((event, memory) => {
      const receivedAt = nowMs();
      const m = event.message;
      if (m.case === 'captureAudioFrame') {
        if (m.value.error) {
          captureErrors++;
          captureError ??= m.value.error;
        }
        return;
      }
      if (m.case !== 'audioStreamEvent' || m.value.message.case !== 'frameReceived') return;
      const frame = m.value.message.value.frame!;
      const st = byStream.get(m.value.streamHandle!);
      if (st === undefined) return path.releaseEventMemory(frame.handle?.id);
      const info = frame.info!;
      const count = (info.numChannels ?? 0) * (info.samplesPerChannel ?? 0);
      const bytes = memory.read(info.dataPtr!, count * 2);
      path.releaseEventMemory(frame.handle?.id);
      // gRPC hands out views at arbitrary offsets; Int16Array needs 2-byte alignment.
      const samples = bytes.byteOffset % 2 === 0 ? new Int16Array(bytes.buffer, bytes.byteOffset, count) : new Int16Array(new Uint8Array(bytes).buffer);
      let last = -1;
      for (const s of samples) {
        if (s === 0) continue;
        // Samples come out in order: the index is nextIndex plus the gap of lost samples. A phase
        // that lies behind nextIndex (less than half a period) is a sample out of sequence: it is
        // placed there and counted, rather than read as 1.37 s of loss.
        const ahead = (rampPhase(s) - (st.nextIndex % PERIOD) + PERIOD) % PERIOD;
        let index: number;
        if (ahead < PERIOD / 2) {
          index = st.nextIndex + ahead;
          st.nextIndex = index + 1;
        } else {
          index = st.nextIndex - (PERIOD - ahead);
          st.outOfSequence++;
        }
        const k = Math.floor(index / FRAME);
        if (k >= 0 && k < st.captures) st.received[k]!++;
        last = Math.max(last, index);
      }
      if (last < 0) {
        if (st.nextIndex !== 0 && phase === 'measure') st.silentFrames++;
        return;
      }
      const k = Math.floor(last / FRAME);
      if (k >= st.captures) {
        st.undecodable++;
        return;
      }
      if (k < firstMeasured) return;
      st.frames++;
      const latency = receivedAt - st.sentAt[k]!;
      latencies.push(latency);
      byPath[st.path]!.push(latency);
      bySecond[Math.floor(((k - firstMeasured) * FRAME_MS) / 1000)]?.push(latency);
    });
  }

  const requestTimes: number[] = [];
  const capture = (st: StreamState) => {
    const path = paths[st.path]!;
    const k = st.captures;
    // A fresh array per capture: the client may hold it until the request is written.
    const samples = new Int16Array(FRAME);
    for (let n = 0; n < FRAME; n++) samples[n] = rampValue(k * FRAME + n);
    const { ptr, buffers } = path.memory(new Uint8Array(samples.buffer));
    const info = new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: SAMPLE_RATE, samplesPerChannel: FRAME });
    const sentAt = nowMs();
    st.sentAt[k] = sentAt;
    st.captures++;
    path.call({ case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: st.source, buffer: info }) }, buffers).then(
      (res) => {
        if (k >= firstMeasured) requestTimes.push(nowMs() - sentAt);
        if (res.case !== 'captureAudioFrame') captureErrors++;
      },
      (err) => {
        captureErrors++;
        captureError ??= String(err);
      },
    );
  };

  // Real-time pace against the monotonic clock, so timer jitter does not accumulate.
  const startedAt = nowMs();
  let sent = 0;
  while (sent < totalFrames) {
    const due = Math.min(totalFrames, Math.floor((nowMs() - startedAt) / FRAME_MS) + 1);
    for (; sent < due; sent++) {
      if (sent === firstMeasured) {
        phase = 'measure';
        opts.onMeasure?.('start');
      }
      for (const st of states) capture(st);
      for (const st of outbound) capture(st);
    }
    await sleep(TICK_MS);
  }
  phase = 'tail';
  // Let the tail through the source queues (all samples back, or the queue's worth of time).
  const capturedSamples = totalFrames * FRAME;
  for (const deadline = nowMs() + queueSizeMs + 1000; nowMs() < deadline; await sleep(20)) {
    if (states.every((st) => st.nextIndex >= capturedSamples)) break;
  }
  opts.onMeasure?.('end');

  let lost = 0;
  let partial = 0;
  for (const st of states) {
    for (let k = firstMeasured; k < totalFrames; k++) {
      if (st.received[k] === 0) lost++;
      else if (st.received[k]! < FRAME) partial++;
    }
  }
  const sum = (f: (st: StreamState) => number) => states.reduce((a, st) => a + f(st), 0);
  const [windowStart, windowEnd] = [startedAt + firstMeasured * FRAME_MS, startedAt + totalFrames * FRAME_MS];
  // Per source at most the window's worth: a capture loop catching up after a stall sends more.
  const inWindow = (st: StreamState) => Math.min(totalFrames - firstMeasured, st.sentAt.subarray(0, st.captures).filter((t) => t >= windowStart && t < windowEnd).length);
  return {
    streams: states.length,
    measured_s: measureS,
    frames_captured: states.length * (totalFrames - firstMeasured),
    captures_in_window: sum(inWindow) + outbound.reduce((a, st) => a + inWindow(st), 0),
    frames_received: sum((st) => st.frames),
    frames_lost: lost,
    frames_partial: partial,
    silent_frames: sum((st) => st.silentFrames),
    capture_errors: captureErrors,
    ...(captureError !== undefined ? { capture_error: captureError } : {}),
    undecodable_frames: sum((st) => st.undecodable),
    out_of_sequence_samples: sum((st) => st.outOfSequence),
    latency_ms: summarize(latencies, 2),
    latency_quantiles_ms: quantiles(latencies, 2),
    latency_p50_ms_by_second: bySecond.map((v) => summarize(v, 1).p50),
    latency_p99_ms_by_path: byPath.map((v) => summarize(v, 2).p99),
    capture_request_ms: summarize(requestTimes, 2),
    ...(outbound.length > 0 ? { capture_only_sources: outbound.length, capture_only_frames_captured: outbound.length * (totalFrames - firstMeasured) } : {}),
    ...(opts.keepLatencies ? { latencies_ms: latencies.map((v) => Math.round(v * 1000) / 1000) } : {}),
  };
}
