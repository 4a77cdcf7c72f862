// Values the library cannot survive. liblivekit_ffi is built with panic = "abort": a request whose
// values make it panic or divide by zero kills the broker and every session with it, so such
// requests are refused here, before the library sees them (each rule below was seen to abort).
// Video layouts, which can also make it read out of bounds, are checked in video_layout.ts.
import { refuse, type Refusal } from './errors.js';
import type { SchemaMessage } from './livekit_schema.js';
import { videoRequestProblem } from './video_layout.js';

// WebRTC's audio buffers hold at most 7680 samples per 10 ms chunk (e.g. 384 kHz stereo).
const MAX_SAMPLES_PER_10MS = 7680;

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

const RULES: Record<string, (m: SchemaMessage) => string | undefined> = {
  apmProcessStream: apmProblem,
  apmProcessReverseStream: apmProblem,
  remixAndResample: (m) => chunkProblem(num(m, 'sampleRate'), num(m, 'numChannels')),
  newSoxResampler: (m) => {
    const input = num(m, 'inputRate');
    const output = num(m, 'outputRate');
    if (!(input > 0 && Number.isFinite(input)) || !(output > 0 && Number.isFinite(output))) return `input_rate ${input} and output_rate ${output} must be positive`;
    if (!(num(m, 'numChannels') >= 1)) return `num_channels ${num(m, 'numChannels')} is below 1`;
    return undefined;
  },
  newAudioStream: optionalChunkProblem,
  audioStreamFromParticipant: optionalChunkProblem,
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
