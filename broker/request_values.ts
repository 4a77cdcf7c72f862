// Values the library cannot survive. liblivekit_ffi is built with panic = "abort": a request whose
// values make it panic or divide by zero kills the broker and every session with it, so such
// requests are refused here, before the library sees them (each rule below was seen to abort).
// Video layouts, which can also make it read out of bounds, are checked in video_layout.ts.
import { refuse, type Refusal } from './errors.js';
import type { SchemaMessage } from './livekit_schema.js';
import { MIN_CAPTURE_DIMENSION, videoRequestProblem } from './video_layout.js';

// WebRTC's audio buffers hold at most 7680 samples per 10 ms chunk (e.g. 384 kHz stereo).
const MAX_SAMPLES_PER_10MS = 7680;
// An audio source's queue is allocated up front (rate × channels × queue_size_ms): a huge one is an
// allocation the library aborts on. A minute is far beyond any real use (the SDKs use 1 s).
const MAX_QUEUE_SIZE_MS = 60_000;
// Stream queues (queue_size_frames, a data track's buffer_size) are allocated up front too: 2^31
// frames asked for 80 GiB and aborted. 0 means unbounded, which the library grows as it needs.
const MAX_QUEUE_FRAMES = 10_000;
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

function queueFramesProblem(m: SchemaMessage | undefined, field: string, name: string): string | undefined {
  if (m === undefined || m[field] === undefined) return undefined;
  return num(m, field) > MAX_QUEUE_FRAMES ? `${name} ${num(m, field)} is over ${MAX_QUEUE_FRAMES}` : undefined;
}
const streamQueueProblem = (m: SchemaMessage): string | undefined => queueFramesProblem(m, 'queueSizeFrames', 'queue_size_frames');
const audioStreamProblem = (m: SchemaMessage): string | undefined => optionalChunkProblem(m) ?? streamQueueProblem(m);

const num = (m: SchemaMessage, field: string): number => Number(m[field] ?? 0);

/** Rate and channel count of 10 ms audio chunks: rate ≥ 100 Hz, ≥ 1 channel, within WebRTC's buffer. */
function chunkProblem(rate: number, channels: number): string | undefined {
  if (!(rate >= 100)) return `sample_rate ${rate} is below 100 Hz`;
  if (!(channels >= 1)) return `num_channels ${channels} is below 1`;
  if (Math.floor(rate / 100) * channels > MAX_SAMPLES_PER_10MS) return `${rate} Hz × ${channels} channels exceeds ${MAX_SAMPLES_PER_10MS} samples per 10 ms`;
  return undefined;
}

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
  return chunkProblem(m.sampleRate === undefined ? 48000 : num(m, 'sampleRate'), m.numChannels === undefined ? 1 : num(m, 'numChannels'));
}

/** An audio frame sent to the library: a valid rate and channel count, and at least one sample. */
function frameProblem(info: SchemaMessage | undefined): string | undefined {
  if (info === undefined) return undefined; // required: the encoder refuses it
  const chunk = chunkProblem(num(info, 'sampleRate'), num(info, 'numChannels'));
  if (chunk !== undefined) return `buffer: ${chunk}`;
  // Seen to hang livekit_ffi_request (and so the broker) with samples_per_channel 0 (fuzz).
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
  remixAndResample: (m) => chunkProblem(num(m, 'sampleRate'), num(m, 'numChannels')) ?? remixInputProblem(m.buffer as SchemaMessage | undefined),
  captureAudioFrame: (m) => frameProblem(m.buffer as SchemaMessage | undefined),
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
  // Seen to abort (std::length_error in vector::reserve) with sample_rate 1,847,138,908 (fuzz seed 250878423).
  newAudioSource: (m) => {
    const chunk = optionalChunkProblem(m);
    if (chunk !== undefined) return chunk;
    if (m.queueSizeMs === undefined) return undefined;
    const queue = num(m, 'queueSizeMs');
    if (queue > MAX_QUEUE_SIZE_MS) return `queue_size_ms ${queue} is over ${MAX_QUEUE_SIZE_MS}`;
    // Seen to panic: "queue_size_ms must be a multiple of 10" (audio_source.rs).
    if (queue % 10 !== 0) return `queue_size_ms ${queue} is not a multiple of 10`;
    return undefined;
  },
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
  newVideoStream: streamQueueProblem,
  videoStreamFromParticipant: streamQueueProblem,
  subscribeDataTrack: (m) => queueFramesProblem(m.options as SchemaMessage | undefined, 'bufferSize', 'options.buffer_size'),
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
