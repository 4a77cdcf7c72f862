// Capture-to-client audio latency through the real broker and the real liblivekit_ffi, no LiveKit
// server: this process captures a ramp into S native audio sources at real-time pace (one 10 ms
// frame per source every 10 ms) and receives the frames back from audio streams on tracks of
// those sources (NewAudioSource → CreateAudioTrack → NewAudioStream, as test/workers/audio_worker.ts).
//
// Every sample names its own index (a ramp over all 65535 non-zero int16 values), so a received
// frame tells which capture request its samples came from, even when the stream re-chunks frames
// or inserts silence. Latency of a frame = its receive time − the send time of the capture request
// holding its last non-silent sample (the frame could not exist before that sample was sent).
import fs from 'node:fs';
import { AudioFrameBufferInfo, AudioSourceType, AudioStreamType, CaptureAudioFrameRequest, NewAudioSourceRequest, NewAudioStreamRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { CreateAudioTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { BrokerClient } from '../client/broker_client.js';
import { audioBuffer, audioSamples } from '../client/media.js';
import { startBroker } from '../test/helpers/processes.js';
import { log, nowMs, sleep, summarize, type Summary } from './stats.js';

const SAMPLE_RATE = 48000;
const FRAME = 480; // samples per capture: 10 ms
const FRAME_MS = 10;
const PERIOD = 65535; // distinct non-zero int16 values: the ramp repeats every 1.37 s
const TICK_MS = 2; // pacing timer; each tick sends every frame that is due by now
const STREAM_COUNTS = [2, 20];
// 1000 ms is what the worker (and the LiveKit SDKs' default) uses; 20 ms shows the part of the
// latency that is the source's own queue.
const QUEUE_SIZES_MS = [1000, 20];

/** Ramp value of sample index n: never 0, so inserted silence is told apart. */
function rampValue(n: number): number {
  const p = n % PERIOD;
  return p < 32767 ? p + 1 : p - PERIOD;
}

function rampPhase(value: number): number {
  return value > 0 ? value - 1 : value + PERIOD;
}

interface StreamState {
  source: bigint;
  stream: bigint;
  /** Send time (ms) of capture k, which holds samples [k*FRAME, (k+1)*FRAME). */
  sentAt: Float64Array;
  captures: number;
  /** Samples received per capture. */
  received: Uint16Array;
  /** Index after the last sample received: samples come out in order. */
  nextIndex: number;
  frames: number;
  silentFrames: number;
  silentFramesWarmup: number;
  /** Frames whose samples decode to captures not sent yet: would mean the index decoding is wrong. */
  undecodable: number;
  /** Samples whose value lies behind the stream's position (repeated or altered samples). */
  outOfSequence: number;
}

export interface CaseResult {
  queue_size_ms: number;
  streams: number;
  measured_s: number;
  /** Frames with at least one non-silent sample of a capture sent in the measured window. */
  frames_received: number;
  /** All-silent frames the streams inserted (source under-run) while measuring, and during warm-up. */
  silent_frames: number;
  silent_frames_warmup: number;
  /** Measured captures (10 ms each) none of whose samples came back. */
  frames_lost: number;
  /** Measured captures of which only part came back. */
  frames_partial: number;
  frames_captured: number;
  capture_errors: number;
  /** The first capture error's message, if any. */
  capture_error?: string;
  undecodable_frames: number;
  out_of_sequence_samples: number;
  latency_ms: Summary;
  /** p50 latency of each measured second, in order: shows whether latency creeps up (under-runs). */
  latency_p50_ms_by_second: (number | null)[];
  /** Round trip of the CaptureAudioFrame request itself (send → FfiResponse), for scale. */
  capture_request_ms: Summary;
}

export interface AudioLatencyReport {
  ffi_version: string;
  ffi_library: string;
  method: string;
  warmup_s: number;
  measure_s: number;
  broker_restarts: number;
  cases: (CaseResult | { queue_size_ms: number; streams: number; error: string })[];
}

async function runCase(address: string, streams: number, queueSizeMs: number, warmupS: number, measureS: number): Promise<CaseResult> {
  const client = await BrokerClient.connect(address, { clientName: `bench-audio-${streams}x${queueSizeMs}ms` });
  try {
    const call = async (message: FfiRequest['message']) => (await client.request(new FfiRequest({ message }))).response.message;
    const totalFrames = Math.round((warmupS + measureS) * 1000 / FRAME_MS);
    const firstMeasured = Math.round((warmupS * 1000) / FRAME_MS);
    const states: StreamState[] = [];
    const byStream = new Map<bigint, StreamState>();
    for (let i = 0; i < streams; i++) {
      const src = await call({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: SAMPLE_RATE, numChannels: 1, queueSizeMs }) });
      if (src.case !== 'newAudioSource') throw new Error(`NewAudioSource answered ${src.case}`);
      const source = src.value.source!.handle!.id!;
      const trk = await call({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: `bench${i}`, sourceHandle: source }) });
      if (trk.case !== 'createAudioTrack') throw new Error(`CreateAudioTrack answered ${trk.case}`);
      const str = await call({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: trk.value.track!.handle!.id!, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: SAMPLE_RATE, numChannels: 1 }) });
      if (str.case !== 'newAudioStream') throw new Error(`NewAudioStream answered ${str.case}`);
      const st: StreamState = {
        source,
        stream: str.value.stream!.handle!.id!,
        sentAt: new Float64Array(totalFrames),
        captures: 0,
        received: new Uint16Array(totalFrames),
        nextIndex: 0,
        frames: 0,
        silentFrames: 0,
        silentFramesWarmup: 0,
        undecodable: 0,
        outOfSequence: 0,
      };
      states.push(st);
      byStream.set(st.stream, st);
    }

    const latencies: number[] = [];
    const bySecond: number[][] = Array.from({ length: Math.ceil(measureS) }, () => []);
    let captureErrors = 0;
    let captureError: string | undefined;
    // Which silent frames count as under-runs: none before a stream's first sample or once
    // capturing has ended (the stream then plays silence by design).
    let phase: 'warmup' | 'measure' | 'tail' = 'warmup';
    client.on('event', ({ event, buffers }) => {
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
      const st = byStream.get(m.value.streamHandle!);
      if (st === undefined) return;
      const samples = audioSamples(buffers, m.value.message.value.frame!.info!);
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
        if (st.nextIndex === 0 || phase === 'tail') return;
        if (phase === 'measure') st.silentFrames++;
        else st.silentFramesWarmup++;
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
      bySecond[Math.floor(((k - firstMeasured) * FRAME_MS) / 1000)]?.push(latency);
    });

    const requestTimes: number[] = [];
    const capture = (st: StreamState) => {
      const k = st.captures;
      const samples = new Int16Array(FRAME);
      for (let n = 0; n < FRAME; n++) samples[n] = rampValue(k * FRAME + n);
      const [ptr, bytes] = audioBuffer(samples);
      const info = new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: SAMPLE_RATE, samplesPerChannel: FRAME });
      const req = new FfiRequest({ message: { case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: st.source, buffer: info }) } });
      const sentAt = nowMs();
      st.sentAt[k] = sentAt;
      st.captures++;
      client.request(req, [[ptr, bytes]]).then(
        ({ response }) => {
          if (k >= firstMeasured) requestTimes.push(nowMs() - sentAt);
          if (response.message.case !== 'captureAudioFrame') captureErrors++;
        },
        () => captureErrors++,
      );
    };

    // Real-time pace against the monotonic clock, so timer jitter does not accumulate.
    const startedAt = nowMs();
    let sent = 0;
    while (sent < totalFrames) {
      const due = Math.min(totalFrames, Math.floor((nowMs() - startedAt) / FRAME_MS) + 1);
      for (; sent < due; sent++) {
        if (sent === firstMeasured) phase = 'measure';
        for (const st of states) capture(st);
      }
      await sleep(TICK_MS);
    }
    phase = 'tail';
    // Let the tail through the source queues (all samples back, or the queue's worth of time).
    const capturedSamples = totalFrames * FRAME;
    for (const deadline = nowMs() + queueSizeMs + 1000; nowMs() < deadline; await sleep(20)) {
      if (states.every((st) => st.nextIndex >= capturedSamples)) break;
    }

    let lost = 0;
    let partial = 0;
    for (const st of states) {
      for (let k = firstMeasured; k < totalFrames; k++) {
        if (st.received[k] === 0) lost++;
        else if (st.received[k]! < FRAME) partial++;
      }
    }
    return {
      queue_size_ms: queueSizeMs,
      streams,
      measured_s: measureS,
      frames_received: states.reduce((a, st) => a + st.frames, 0),
      silent_frames: states.reduce((a, st) => a + st.silentFrames, 0),
      silent_frames_warmup: states.reduce((a, st) => a + st.silentFramesWarmup, 0),
      frames_lost: lost,
      frames_partial: partial,
      frames_captured: streams * (totalFrames - firstMeasured),
      capture_errors: captureErrors,
      ...(captureError !== undefined ? { capture_error: captureError } : {}),
      undecodable_frames: states.reduce((a, st) => a + st.undecodable, 0),
      out_of_sequence_samples: states.reduce((a, st) => a + st.outOfSequence, 0),
      latency_ms: summarize(latencies, 2),
      latency_p50_ms_by_second: bySecond.map((v) => summarize(v, 1).p50),
      capture_request_ms: summarize(requestTimes, 2),
    };
  } finally {
    // Ending the session makes the broker drop its sources, tracks and streams.
    await client.close();
  }
}

export async function audioLatency(quick: boolean): Promise<AudioLatencyReport> {
  const warmupS = quick ? 0.5 : 1;
  const measureS = quick ? 2 : 5;
  // info level: debug logging of every request would be part of what is measured.
  const start = () => startBroker(['--log-level', 'info']);
  let broker = await start();
  let restarts = 0;
  try {
    const info = await broker.info();
    const cases: AudioLatencyReport['cases'] = [];
    for (const queueSizeMs of QUEUE_SIZES_MS) {
      for (const streams of STREAM_COUNTS) {
        log(`audio_latency: ${streams} streams, source queue ${queueSizeMs} ms, ${warmupS} s warm-up + ${measureS} s`);
        // The broker's socket lives in a shared temp dir other test runs may clean up; a broker
        // that cannot be reached (or died) is replaced rather than failing the case.
        if (!fs.existsSync(broker.socketPath) || broker.proc.exitCode !== null || broker.proc.signalCode !== null) {
          log('  broker socket gone or broker exited: starting a new broker');
          await broker.stop();
          broker = await start();
          restarts++;
        }
        try {
          const r = await runCase(broker.address, streams, queueSizeMs, warmupS, measureS);
          log(`  p50 ${r.latency_ms.p50} ms, p99 ${r.latency_ms.p99} ms, ${r.frames_received} frames, ${r.frames_lost} lost`);
          cases.push(r);
        } catch (err) {
          log(`  failed: ${String(err)}`);
          cases.push({ queue_size_ms: queueSizeMs, streams, error: String((err as Error)?.message ?? err) });
        }
        await sleep(200); // let the broker finish tearing the previous session down
      }
    }
    return {
      ffi_version: info.ffiVersion,
      ffi_library: info.ffiLibrary,
      method:
        'one client process (this one) captures a ramp at real-time pace into each source and receives the frames; ' +
        'latency = frame receive time - send time of the capture request holding its last non-silent sample (process.hrtime)',
      warmup_s: warmupS,
      measure_s: measureS,
      broker_restarts: restarts,
      cases,
    };
  } finally {
    await broker.stop();
  }
}
