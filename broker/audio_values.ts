// Audio values liblivekit_ffi aborts, crashes or hangs on, each rule at the library's own line
// (measured with test/workers/raw_library.ts and shown from both sides in test/guard_thresholds.test.ts).
// WebRTC works in 10 ms chunks of rate / 100 samples per channel; three of its limits recur:
// - an AudioFrame holds 7680 samples (kMaxDataSizeSamples): a RemixAndResample to 768,100 Hz mono
//   fails "total_samples <= data_.size() (7681 vs. 7680)", 768,000 Hz works;
// - downmixing writes into a 7680-sample array on the stack (audio/remix_resample.cc), once per
//   destination channel for quad to stereo, once otherwise: 1,536,000 Hz stereo to mono and
//   768,000 Hz quad to stereo crash (SIGSEGV), 768,000 Hz stereo to mono works;
// - the sinc resampler needs 16 samples per channel in a chunk: 1500 Hz (15) to any other rate
//   fails "source_available_ == frames", 1600 Hz works (to 100 Hz … 768 kHz).
import type { SchemaMessage } from './livekit_schema.js';

export const MAX_FRAME_SAMPLES = 7680;
const MIN_RESAMPLED_CHUNK = 16;
const INT32_MAX = 0x7fff_ffff;

const num = (m: SchemaMessage, field: string): number => Number(m[field] ?? 0);
const chunkOf = (rate: number): number => Math.floor(rate / 100);

/** How many samples per source sample-frame WebRTC writes into its downmix array, `from` → `to` channels. */
const downmixWidth = (from: number, to: number): number => (from === 4 && to === 2 ? 2 : 1);

/** NewAudioSourceRequest: values as the library reads them (unset fields take its defaults). */
export function audioSourceProblem(m: SchemaMessage): string | undefined {
  const rate = m.sampleRate === undefined ? 48000 : num(m, 'sampleRate');
  const channels = m.numChannels === undefined ? 1 : num(m, 'numChannels');
  const queue = m.queueSizeMs === undefined ? 1000 : num(m, 'queueSizeMs');
  // The capture path divides by the channel count: 0 is a SIGFPE once a stream listens (measured).
  if (channels < 1) return `num_channels ${channels} is below 1`;
  // Each goes to C++ as an i32 with unwrap() (libwebrtc native/audio_source.rs:59-61): 2^31 panics (measured).
  for (const [name, value] of [['sample_rate', rate], ['num_channels', channels], ['queue_size_ms', queue]] as const) {
    if (value > INT32_MAX) return `${name} ${value} is over 2^31 − 1`;
  }
  const chunk = chunkOf(rate);
  // Such a source aborts the library as soon as its audio is resampled (a stream at another rate,
  // or publishing); below 100 Hz its chunks are empty, which the library survives.
  if (chunk >= 1 && chunk < MIN_RESAMPLED_CHUNK) return `sample_rate ${rate} gives ${chunk} samples per 10 ms; WebRTC's resampler needs at least ${MIN_RESAMPLED_CHUNK}`;
  if (channels >= 2 && chunk * downmixWidth(channels, 2) > MAX_FRAME_SAMPLES) {
    return `${rate} Hz × ${channels} channels: downmixing it (for a stream or a track with fewer channels) overruns WebRTC's ${MAX_FRAME_SAMPLES}-sample buffer`;
  }
  return audioSourceQueueProblem(queue, rate, channels);
}

// The source's queue (webrtc-sys audio_track.cpp, InternalSource), in C++ int:
// samples = queue_size_ms / 10 × (sample_rate / 100 × num_channels), then buffer_.reserve(2 × samples).
// Past INT32_MAX the sum turns negative and reserve throws std::length_error, an abort (measured at
// 48 kHz mono: 22,369,620 ms works, 22,369,630 ms aborts); below, audioSourceQueueBytes must fit in memory.
function audioSourceQueueProblem(queue: number, rate: number, channels: number): string | undefined {
  // "queue_size_ms must be a multiple of 10" (native/audio_source.rs:55), measured.
  if (queue % 10 !== 0) return `queue_size_ms ${queue} is not a multiple of 10`;
  const samples = Math.floor(queue / 10) * chunkOf(rate) * channels;
  if (2 * samples > INT32_MAX) {
    return `queue_size_ms ${queue} at ${rate} Hz × ${channels} channels is ${samples} samples; the library sizes its queue as 2 × that in a C++ int, which overflows past ${INT32_MAX}`;
  }
  return undefined;
}

/** Bytes the library reserves up front for a NewAudioSourceRequest's queue. */
export function audioSourceQueueBytes(m: SchemaMessage): number {
  const rate = m.sampleRate === undefined ? 48000 : num(m, 'sampleRate');
  const channels = m.numChannels === undefined ? 1 : num(m, 'numChannels');
  const queue = m.queueSizeMs === undefined ? 1000 : num(m, 'queueSizeMs');
  return 2 * Math.floor(queue / 10) * chunkOf(rate) * channels * 2;
}

/**
 * An audio stream's output format (NewAudioStream, AudioStreamFromParticipant): frames of another
 * format are remixed into an AudioFrame of rate / 100 samples × the channels kept, at most the
 * stream's. Nothing else: 0 channels and rates below 100 Hz work (measured).
 */
export function audioStreamFormatProblem(m: SchemaMessage): string | undefined {
  if (m.sampleRate === undefined && m.numChannels === undefined) return undefined;
  const rate = m.sampleRate === undefined ? 48000 : num(m, 'sampleRate');
  const channels = m.numChannels === undefined ? 1 : num(m, 'numChannels');
  if (chunkOf(rate) * channels > MAX_FRAME_SAMPLES) return `${rate} Hz × ${channels} channels exceeds ${MAX_FRAME_SAMPLES} samples per 10 ms`;
  return undefined;
}

/** RemixAndResampleRequest: the frame in `buffer`, the output format in the request. */
export function remixProblem(m: SchemaMessage): string | undefined {
  const outRate = num(m, 'sampleRate');
  const outChannels = num(m, 'numChannels');
  const info = m.buffer as SchemaMessage | undefined;
  if (info === undefined) return undefined; // required: the encoder refuses it
  const inRate = num(info, 'sampleRate');
  const inChannels = num(info, 'numChannels');
  const samples = num(info, 'samplesPerChannel');
  // requests.rs divides the output by its channel count (measured: "attempt to divide by zero").
  if (outChannels < 1) return `num_channels ${outChannels} is below 1`;
  // 0 samples hangs livekit_ffi_request (and so the broker); measured.
  if (samples < 1) return 'buffer.samples_per_channel is 0';
  const inChunk = chunkOf(inRate);
  // A partial chunk fails "source_available_ == frames" (7 samples at 48 kHz; fuzz seed 251453608).
  if (inChunk < 1) return `buffer.sample_rate ${inRate} is below 100 Hz: its 10 ms chunk has no samples`;
  if (samples % inChunk !== 0) return `buffer.samples_per_channel ${samples} is not a whole number of 10 ms chunks (${inChunk} samples each)`;
  const outChunk = chunkOf(outRate);
  if (outChunk >= 1 && outChunk !== inChunk && inChunk < MIN_RESAMPLED_CHUNK) {
    return `buffer.sample_rate ${inRate} gives ${inChunk} samples per 10 ms; WebRTC's resampler needs at least ${MIN_RESAMPLED_CHUNK}`;
  }
  if (inChannels > outChannels && samples * downmixWidth(inChannels, outChannels) > MAX_FRAME_SAMPLES) {
    return `downmixing ${samples} samples × ${inChannels} channels to ${outChannels} overruns WebRTC's ${MAX_FRAME_SAMPLES}-sample buffer`;
  }
  if (outChunk * Math.min(inChannels, outChannels) > MAX_FRAME_SAMPLES) return `${outRate} Hz × ${Math.min(inChannels, outChannels)} channels exceeds ${MAX_FRAME_SAMPLES} samples per 10 ms`;
  return undefined;
}

// APM (libwebrtc native/apm.rs:48-49), measured: a rate below 100 Hz or no channels divides by zero,
// a size that is not whole 10 ms chunks (0 included) fails an assert. No upper bound: 384 kHz × 3
// channels and 48 kHz × 100 channels work, 1,536 kHz gets an error response.
export function apmProblem(m: SchemaMessage): string | undefined {
  const rate = num(m, 'sampleRate');
  const channels = num(m, 'numChannels');
  if (!(rate >= 100)) return `sample_rate ${rate} is below 100 Hz`;
  if (!(channels >= 1)) return `num_channels ${channels} is below 1`;
  const samples = Math.floor(num(m, 'size') / 2);
  const per10ms = chunkOf(rate) * channels;
  if (samples === 0 || samples % per10ms !== 0) return `size ${num(m, 'size')} bytes is not a whole number of 10 ms chunks (${per10ms * 2} bytes each)`;
  return undefined;
}
