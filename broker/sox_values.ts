// The sox resampler (livekit-ffi server/resampler.rs) and the values it cannot survive. Measured with
// test/workers/raw_library.ts: rates of 1 Hz, 10 Hz, 0.5 → 48,000 Hz, 33 and 1000 channels all
// work; rates ≤ 0 make soxr_create fail, and every later call answers an error ("null pointer").
// What aborts, crashes or hangs:
// - a NaN or infinite rate: creation or the first push hangs (30 s and more, measured);
// - num_channels 0: each push divides by it (resampler.rs:98, "attempt to divide by zero");
// - many channels: a push reads past the end of an array (SIGSEGV in soxr_process), erratically:
//   pushing 1 sample per channel crashed 1 run in 3 at 10,000 channels, 3 in 5 at 16,000, every
//   run at 65,536; 2^31 hangs creation. Up to 9000 never crashed (1 or 480 samples, 30 runs), so
//   the limit is 8192;
// - the output buffer, reserved at creation as output_rate / 100 samples: output_rate 1e30 asked
//   for 368,934,881,474,191,032 bytes and aborted;
// - a push resizes (and zero-fills) that buffer to (ceil(samples × output_rate / input_rate) +
//   delay + 1) × channels samples: 480 samples at 48 kHz → 1e12 Hz wrote for 30 s and more.
//   Its output comes back in one message, so a push whose output cannot fit one is refused: the
//   library would write it and the broker could not send it.
import { allocationProblem } from './host_memory.js';
import type { SchemaMessage } from './livekit_schema.js';

const num = (m: SchemaMessage, field: string): number => Number(m[field] ?? 0);
/** Room left in a message for what surrounds the output bytes. */
const MESSAGE_OVERHEAD = 4096;
const MAX_CHANNELS = 8192;

export function soxCreationProblem(m: SchemaMessage): string | undefined {
  const input = num(m, 'inputRate');
  const output = num(m, 'outputRate');
  if (!Number.isFinite(input) || !Number.isFinite(output)) return `input_rate ${input} and output_rate ${output} must be finite`;
  if (num(m, 'numChannels') < 1) return `num_channels ${num(m, 'numChannels')} is below 1: every push divides by it`;
  if (num(m, 'numChannels') > MAX_CHANNELS) return `num_channels ${num(m, 'numChannels')} is over ${MAX_CHANNELS}: soxr crashes on pushes from about 10,000`;
  return allocationProblem(`output_rate ${output}`, Math.max(0, Math.floor(output / 100)) * 2);
}

interface Format {
  ratio: number;
  channels: number;
}

/** The format of each sox resampler the library made, to check its pushes. */
export class SoxFormats {
  private readonly formats = new Map<bigint, Format>();

  /** After the library made `handle` from `request`; forgets resamplers no session owns any more. */
  remember(handle: bigint, request: SchemaMessage, isOwned: (handle: bigint) => boolean): void {
    for (const known of this.formats.keys()) if (!isOwned(known)) this.formats.delete(known);
    this.formats.set(handle, { ratio: num(request, 'outputRate') / num(request, 'inputRate'), channels: num(request, 'numChannels') });
  }

  /** Why a PushSoxResamplerRequest cannot be answered, or undefined. */
  pushProblem(m: SchemaMessage, maxBytes: number): string | undefined {
    const format = typeof m.resamplerHandle === 'bigint' ? this.formats.get(m.resamplerHandle) : undefined;
    // Rates ≤ 0 (ratio not positive and finite): soxr_create failed and the push answers an error.
    if (format === undefined || !(format.ratio > 0 && Number.isFinite(format.ratio))) return undefined;
    const frames = Math.floor(num(m, 'size') / 2 / format.channels);
    const bytes = (Math.ceil(frames * format.ratio) + 1) * format.channels * 2;
    if (bytes + MESSAGE_OVERHEAD <= maxBytes) return undefined;
    return `size ${num(m, 'size')} bytes resampled by ${format.ratio} comes back as about ${bytes} bytes, over the ${maxBytes}-byte message limit; push less at a time`;
  }
}
