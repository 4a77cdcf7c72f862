// Values the library cannot survive. liblivekit_ffi is built with panic = "abort": a request whose
// values make it panic or divide by zero kills the broker and every session with it, so such
// requests are refused here, before the library sees them. Each rule sits where the library's own
// abort (or hang) starts, never before it: what the library accepts, the broker passes. Where a rule
// says "measured", test/abort_guard.test.ts sends the values on both sides of it to the real library.
// Video layouts, which can also make it read out of bounds, are checked in video_layout.ts.
import { refuse, type Refusal } from './errors.js';
import { ALLOCATION_SLACK, largestAllocation } from './host_memory.js';
import type { SchemaMessage } from './livekit_schema.js';
import { MIN_CAPTURE_DIMENSION, videoRequestProblem } from './video_layout.js';

// WebRTC's AudioFrame holds at most 7680 samples (kMaxDataSizeSamples): a RemixAndResample output of
// 768,100 Hz mono checked "total_samples <= data_.size() (7681 vs. 7680)" and aborted; 768,000 Hz works.
const MAX_SAMPLES_PER_10MS = 7680;
const INT32_MAX = 0x7fff_ffff;
// Bytes per slot of a stream's frame queue, which rtrb allocates up front (libwebrtc
// native/audio_stream.rs, video_stream.rs): measured from the library's own "memory allocation of
// N bytes failed" (25,280,510,200 bytes for 632,012,755 audio frames; 63,183,275,520 for 789,790,944
// video frames). 0 frames means unbounded, which the library grows as it needs.
const AUDIO_QUEUE_SLOT_BYTES = 40;
const VIDEO_QUEUE_SLOT_BYTES = 80;
// A data track's buffer is a tokio broadcast channel (livekit-datatrack remote/manager.rs), which
// panics on capacity 0 ("broadcast channel capacity cannot be zero", tokio 1.53 sync/broadcast.rs)
// and fills next_power_of_two(capacity) slots up front, each at least rem + pos + its lock (24 bytes:
// a lower bound, so the rule never refuses a buffer the library could make).
const DATA_TRACK_SLOT_BYTES = 24;
// A video source's resolution is the aspect ratio WebRTC crops captured frames to (video_layout.ts).
const MAX_SOURCE_ASPECT = 16;
// A sox resampler sizes its output for each push from the rates and channels
// (ceil(in × out/in) + delay, × channels, as usize): a huge ratio or channel count overflowed it into
// "memory allocation of 368934881474191032 bytes failed", an abort (fuzz seed 256279016). Real audio
// is 8–384 kHz; a ratio of 16 takes 8 kHz to 128 kHz and bounds a push's output at 16× its input.
const SOX_MIN_RATE = 1000;
const SOX_MAX_RATE = 768_000;
const SOX_MAX_RATIO = 16;
const SOX_MAX_CHANNELS = 32;

/** Why an allocation of `bytes`, made up front from a worker's value, would fail on this host. */
function allocationProblem(what: string, bytes: number): string | undefined {
  const limit = largestAllocation();
  return bytes + ALLOCATION_SLACK > limit ? `${what} would reserve ${bytes} bytes, more than this host's kernel grants one allocation (${limit} bytes)` : undefined;
}

function queueFramesProblem(m: SchemaMessage, slotBytes: number): string | undefined {
  if (m.queueSizeFrames === undefined) return undefined;
  const frames = num(m, 'queueSizeFrames');
  return allocationProblem(`queue_size_frames ${frames} (${slotBytes} bytes each)`, frames * slotBytes);
}
const audioStreamProblem = (m: SchemaMessage): string | undefined => optionalChunkProblem(m) ?? queueFramesProblem(m, AUDIO_QUEUE_SLOT_BYTES);
const videoStreamProblem = (m: SchemaMessage): string | undefined => queueFramesProblem(m, VIDEO_QUEUE_SLOT_BYTES);

function dataTrackBufferProblem(options: SchemaMessage | undefined): string | undefined {
  if (options?.bufferSize === undefined) return undefined;
  const size = num(options, 'bufferSize');
  if (size < 1) return 'options.buffer_size 0: the library makes its buffer a tokio broadcast channel, which panics on capacity 0';
  return allocationProblem(`options.buffer_size ${size}`, 2 ** Math.ceil(Math.log2(size)) * DATA_TRACK_SLOT_BYTES);
}

// The audio source's queue (webrtc-sys audio_track.cpp, InternalSource): in C++ int,
// samples = queue_size_ms / 10 × (sample_rate / 100 × num_channels), then buffer_.reserve(2 × samples).
// Past INT32_MAX the sum turns negative and reserve throws std::length_error, an abort (measured at
// 48 kHz mono: 22,369,620 ms works, 22,369,630 ms aborts); below it the reservation must fit in memory.
function audioSourceQueueProblem(queue: number, rate: number, channels: number): string | undefined {
  // "queue_size_ms must be a multiple of 10" (libwebrtc native/audio_source.rs:55), measured.
  if (queue % 10 !== 0) return `queue_size_ms ${queue} is not a multiple of 10`;
  const samples = Math.floor(queue / 10) * Math.floor(rate / 100) * channels;
  if (2 * samples > INT32_MAX) {
    return `queue_size_ms ${queue} at ${rate} Hz × ${channels} channels is ${samples} samples; the library sizes its queue as 2 × that in a C++ int, which overflows past ${INT32_MAX}`;
  }
  return allocationProblem(`queue_size_ms ${queue}`, 2 * samples * 2);
}

function audioSourceProblem(m: SchemaMessage): string | undefined {
  const rate = m.sampleRate === undefined ? 48000 : num(m, 'sampleRate');
  const channels = m.numChannels === undefined ? 1 : num(m, 'numChannels');
  const queue = m.queueSizeMs === undefined ? 1000 : num(m, 'queueSizeMs');
  // The capture path divides by the channel count: 0 is a SIGFPE once a stream listens (measured).
  if (channels < 1) return `num_channels ${channels} is below 1`;
  // Each goes to C++ as an i32 with unwrap() (native/audio_source.rs:59-61): 2^31 panics (measured).
  for (const [name, value] of [['sample_rate', rate], ['num_channels', channels], ['queue_size_ms', queue]] as const) {
    if (value > INT32_MAX) return `${name} ${value} is over 2^31 − 1`;
  }
  return audioSourceQueueProblem(queue, rate, channels);
}

const num = (m: SchemaMessage, field: string): number => Number(m[field] ?? 0);

/** Rate and channel count of 10 ms audio chunks: rate ≥ 100 Hz (below, a chunk has no samples and the
 * library divides by its size), ≥ 1 channel. */
function chunkProblem(rate: number, channels: number): string | undefined {
  if (!(rate >= 100)) return `sample_rate ${rate} is below 100 Hz`;
  if (!(channels >= 1)) return `num_channels ${channels} is below 1`;
  return undefined;
}

/** chunkProblem, and a chunk that fits in WebRTC's AudioFrame. */
function frameChunkProblem(rate: number, channels: number): string | undefined {
  const chunk = chunkProblem(rate, channels);
  if (chunk !== undefined) return chunk;
  if (Math.floor(rate / 100) * channels > MAX_SAMPLES_PER_10MS) return `${rate} Hz × ${channels} channels exceeds ${MAX_SAMPLES_PER_10MS} samples per 10 ms`;
  return undefined;
}

// APM (libwebrtc native/apm.rs:48-49), measured: a rate below 100 Hz or no channels divides by zero,
// a size that is not whole 10 ms chunks (0 included) fails an assert. No upper bound: 384 kHz × 3
// channels and 48 kHz × 100 channels work, 1,536 kHz gets an error response.
function apmProblem(m: SchemaMessage): string | undefined {
  const rate = num(m, 'sampleRate');
  const channels = num(m, 'numChannels');
  const chunk = chunkProblem(rate, channels);
  if (chunk !== undefined) return chunk;
  const samples = Math.floor(num(m, 'size') / 2);
  const per10ms = Math.floor(rate / 100) * channels;
  if (samples === 0 || samples % per10ms !== 0) return `size ${num(m, 'size')} bytes is not a whole number of 10 ms chunks (${per10ms * 2} bytes each)`;
  return undefined;
}

// A field the request may leave unset (proto2 optional): checked only when set.
function optionalChunkProblem(m: SchemaMessage): string | undefined {
  if (m.sampleRate === undefined && m.numChannels === undefined) return undefined;
  return frameChunkProblem(m.sampleRate === undefined ? 48000 : num(m, 'sampleRate'), m.numChannels === undefined ? 1 : num(m, 'numChannels'));
}

/** An audio frame sent to the resampler: a valid rate and channel count, and at least one sample. */
function frameProblem(info: SchemaMessage | undefined): string | undefined {
  if (info === undefined) return undefined; // required: the encoder refuses it
  const chunk = frameChunkProblem(num(info, 'sampleRate'), num(info, 'numChannels'));
  if (chunk !== undefined) return `buffer: ${chunk}`;
  // samples_per_channel 0 hangs livekit_ffi_request (and so the broker): measured.
  if (num(info, 'samplesPerChannel') < 1) return 'buffer.samples_per_channel is 0';
  return undefined;
}

// WebRTC's resampler takes whole 10 ms chunks: 7 samples at 48 kHz aborted it ("Check failed:
// source_available_ == frames", push_sinc_resampler.cc; fuzz seed 251453608).
function remixInputProblem(info: SchemaMessage | undefined): string | undefined {
  const frame = frameProblem(info);
  if (frame !== undefined || info === undefined) return frame;
  const per10ms = Math.floor(num(info, 'sampleRate') / 100);
  if (num(info, 'samplesPerChannel') % per10ms !== 0) return `buffer.samples_per_channel ${num(info, 'samplesPerChannel')} is not a whole number of 10 ms chunks (${per10ms} samples each)`;
  return undefined;
}

const RULES: Record<string, (m: SchemaMessage) => string | undefined> = {
  apmProcessStream: apmProblem,
  apmProcessReverseStream: apmProblem,
  remixAndResample: (m) => frameChunkProblem(num(m, 'sampleRate'), num(m, 'numChannels')) ?? remixInputProblem(m.buffer as SchemaMessage | undefined),
  // No rule for CaptureAudioFrameRequest: the library answers a frame that does not match its source
  // with an error, and frames that match an accepted source work (0 samples too): measured.
  newSoxResampler: (m) => {
    const input = num(m, 'inputRate');
    const output = num(m, 'outputRate');
    if (!(input > 0 && Number.isFinite(input)) || !(output > 0 && Number.isFinite(output))) return `input_rate ${input} and output_rate ${output} must be positive`;
    if (!(num(m, 'numChannels') >= 1)) return `num_channels ${num(m, 'numChannels')} is below 1`;
    if (num(m, 'numChannels') > SOX_MAX_CHANNELS) return `num_channels ${num(m, 'numChannels')} is over ${SOX_MAX_CHANNELS}`;
    for (const [name, rate] of [['input_rate', input], ['output_rate', output]] as const) {
      if (rate < SOX_MIN_RATE || rate > SOX_MAX_RATE) return `${name} ${rate} is outside ${SOX_MIN_RATE}..${SOX_MAX_RATE} Hz`;
    }
    if (output / input > SOX_MAX_RATIO) return `output_rate / input_rate = ${output / input} is over ${SOX_MAX_RATIO}`;
    return undefined;
  },
  newAudioSource: audioSourceProblem,
  newAudioStream: audioStreamProblem,
  audioStreamFromParticipant: audioStreamProblem,
  newVideoSource: (m) => {
    const resolution = m.resolution as SchemaMessage | undefined;
    if (resolution === undefined) return undefined;
    const width = num(resolution, 'width');
    const height = num(resolution, 'height');
    if (width < MIN_CAPTURE_DIMENSION || height < MIN_CAPTURE_DIMENSION) return `resolution ${width}×${height} is below ${MIN_CAPTURE_DIMENSION}×${MIN_CAPTURE_DIMENSION}`;
    if (Math.max(width, height) / Math.min(width, height) > MAX_SOURCE_ASPECT) return `resolution ${width}×${height} has an aspect ratio over ${MAX_SOURCE_ASPECT}:1`;
    return undefined;
  },
  newVideoStream: videoStreamProblem,
  videoStreamFromParticipant: videoStreamProblem,
  subscribeDataTrack: (m) => dataTrackBufferProblem(m.options as SchemaMessage | undefined),
};

const VIDEO_KINDS = new Set(['captureVideoFrame', 'videoConvert']);

/** null when the values are safe for the library; else the refusal. */
export function valueVerdict(kind: string, typeName: string, value: SchemaMessage, maxBytes: number): Refusal | null {
  if (VIDEO_KINDS.has(kind)) {
    const problem = videoRequestProblem(value, maxBytes);
    return problem === undefined ? null : refuse.badVideoBuffer(typeName, problem);
  }
  const problem = RULES[kind]?.(value);
  return problem === undefined ? null : refuse.unsafeValues(typeName, problem);
}
