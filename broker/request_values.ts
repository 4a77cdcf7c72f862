// Values the library cannot survive. liblivekit_ffi is built with panic = "abort": a request whose
// values make it panic or divide by zero kills the broker and every session with it, so such
// requests are refused here, before the library sees them. Each rule sits where the library's own
// abort (or hang) starts, never before it: what the library accepts, the broker passes. "Measured"
// means the values on both sides were sent to the real library (test/workers/raw_library.ts;
// test/guard_thresholds.test.ts shows them). Audio rules are in audio_values.ts, the sox resampler's
// in sox_values.ts, video layouts (which can also make it read out of bounds) in video_layout.ts.
import { refuse, type Refusal } from './errors.js';
import { apmProblem, audioSourceProblem, audioSourceQueueBytes, audioStreamFormatProblem, remixProblem } from './audio_values.js';
import { allocationProblem } from './host_memory.js';
import type { SchemaMessage } from './livekit_schema.js';
import { soxCreationProblem } from './sox_values.js';
import { videoRequestProblem } from './video_layout.js';

// Bytes per slot of a stream's frame queue, which rtrb allocates up front (libwebrtc
// native/audio_stream.rs, video_stream.rs): measured from the library's own "memory allocation of
// N bytes failed" (25,280,510,200 bytes for 632,012,755 audio frames; 63,183,275,520 for 789,790,944
// video frames). 0 frames means unbounded, which the library grows as it needs.
const AUDIO_QUEUE_SLOT_BYTES = 40;
const VIDEO_QUEUE_SLOT_BYTES = 80;
// A data track's buffer is a tokio broadcast channel (livekit-datatrack remote/manager.rs), which
// panics on capacity 0 ("broadcast channel capacity cannot be zero", tokio 1.53 sync/broadcast.rs)
// and fills next_power_of_two(capacity) slots up front, each at least rem + pos + its lock (24 bytes:
// a lower bound, so the rule never refuses a buffer the library could make). Not measured: a data
// track needs a server.
const DATA_TRACK_SLOT_BYTES = 24;
const INT32_MAX = 0x7fff_ffff;

const num = (m: SchemaMessage, field: string): number => Number(m[field] ?? 0);

function queueFramesProblem(m: SchemaMessage, slotBytes: number): string | undefined {
  if (m.queueSizeFrames === undefined) return undefined;
  const frames = num(m, 'queueSizeFrames');
  return allocationProblem(`queue_size_frames ${frames} (${slotBytes} bytes each)`, frames * slotBytes);
}
const audioStreamProblem = (m: SchemaMessage): string | undefined => audioStreamFormatProblem(m) ?? queueFramesProblem(m, AUDIO_QUEUE_SLOT_BYTES);
const videoStreamProblem = (m: SchemaMessage): string | undefined => queueFramesProblem(m, VIDEO_QUEUE_SLOT_BYTES);

function dataTrackBufferProblem(options: SchemaMessage | undefined): string | undefined {
  if (options?.bufferSize === undefined) return undefined;
  const size = num(options, 'bufferSize');
  if (size < 1) return 'options.buffer_size 0: the library makes its buffer a tokio broadcast channel, which panics on capacity 0';
  return allocationProblem(`options.buffer_size ${size}`, 2 ** Math.ceil(Math.log2(size)) * DATA_TRACK_SLOT_BYTES);
}

const RULES: Record<string, (m: SchemaMessage) => string | undefined> = {
  apmProcessStream: apmProblem,
  apmProcessReverseStream: apmProblem,
  remixAndResample: remixProblem,
  // No rule for CaptureAudioFrameRequest: the library answers a frame that does not match its source
  // with an error, and frames that match an accepted source work (0 samples too): measured.
  newSoxResampler: soxCreationProblem,
  newAudioSource: (m) => audioSourceProblem(m) ?? allocationProblem(`queue_size_ms ${num(m, 'queueSizeMs')}`, audioSourceQueueBytes(m)),
  newAudioStream: audioStreamProblem,
  audioStreamFromParticipant: audioStreamProblem,
  // A video source makes an I420 frame of its resolution, sized in a C++ int: measured, 0 fails
  // "width > 0", 1×1 works (any captured frame of 4×4 and up), 37,836² works and 37,837² fails
  // "IsValueInRangeForNumericType" (37,837² + 2 × 18,919² is over 2^31 − 1), as does 1,073,741,824 × 1.
  newVideoSource: (m) => {
    const resolution = m.resolution as SchemaMessage | undefined;
    if (resolution === undefined) return undefined;
    const width = num(resolution, 'width');
    const height = num(resolution, 'height');
    if (width < 1 || height < 1) return `resolution ${width}×${height} has a side of 0`;
    const i420Bytes = width * height + 2 * Math.ceil(width / 2) * Math.ceil(height / 2);
    if (i420Bytes > INT32_MAX) return `resolution ${width}×${height} makes an I420 frame of ${i420Bytes} bytes, over 2^31 − 1`;
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
