// Pointer fields (data_ptr and the like) cannot point into another process, so media travels as
// Buffer{ptr, data} next to the message. These helpers map between those buffers and typed views.

/** The fields of livekit.proto.AudioFrameBufferInfo that locate its samples (v1 message or plain object). */
export interface AudioBufferInfoLike {
  dataPtr?: bigint;
  numChannels?: number;
  samplesPerChannel?: number;
}

/** The buffers of a Response or Event, keyed by the pointer value they stand for. */
export type BufferMap = ReadonlyMap<bigint, Uint8Array>;

/**
 * The bytes at `ptr`, `byteLength` long. Exact matches are the norm; a pointer inside a larger
 * buffer (e.g. a video plane inside its frame) is found too.
 */
export function bufferAt(buffers: BufferMap, ptr: bigint, byteLength: number): Uint8Array {
  const exact = buffers.get(ptr);
  if (exact !== undefined) {
    if (exact.byteLength < byteLength) {
      throw new RangeError(`buffer at 0x${ptr.toString(16)} holds ${exact.byteLength} bytes, ${byteLength} needed`);
    }
    return exact.subarray(0, byteLength);
  }
  for (const [base, data] of buffers) {
    if (ptr > base && ptr - base < BigInt(data.byteLength)) {
      const offset = Number(ptr - base);
      if (data.byteLength - offset < byteLength) {
        throw new RangeError(
          `buffer at 0x${base.toString(16)} holds ${data.byteLength - offset} bytes past 0x${ptr.toString(16)}, ${byteLength} needed`,
        );
      }
      return data.subarray(offset, offset + byteLength);
    }
  }
  throw new RangeError(`no buffer for pointer 0x${ptr.toString(16)}`);
}

/**
 * The interleaved i16 samples of an audio frame, as an Int16Array. A view over the received bytes
 * when they are 2-byte aligned (no copy), else a copy. Samples are in the broker host's byte
 * order, which is little-endian on every platform liblivekit_ffi ships for, as is ours.
 */
export function audioSamples(buffers: BufferMap, info: AudioBufferInfoLike): Int16Array {
  if (info.dataPtr === undefined || info.dataPtr === 0n) throw new RangeError('audio frame info has no data_ptr');
  const count = (info.numChannels ?? 0) * (info.samplesPerChannel ?? 0);
  const bytes = bufferAt(buffers, info.dataPtr, count * 2);
  if (bytes.byteOffset % 2 === 0) return new Int16Array(bytes.buffer, bytes.byteOffset, count);
  // gRPC hands out views into its receive buffers at arbitrary offsets; Int16Array needs alignment.
  const copy = new Uint8Array(bytes);
  return new Int16Array(copy.buffer, copy.byteOffset, count);
}

// Fake pointer values for memory the client sends. Any unique non-zero uint64 works, as the broker
// maps them to its own copies; ranges never overlap so a pointer inside a buffer stays unambiguous.
// Process-wide, so unique within every client of this process too.
const FAKE_POINTER_BASE = 0x1000_0000_0000n;
let nextFakePointer = FAKE_POINTER_BASE;

/** A fresh fake pointer for a buffer of `byteLength` bytes (8-byte aligned, never reused). */
export function allocatePointer(byteLength: number): bigint {
  const ptr = nextFakePointer;
  const span = Math.max(8, Math.ceil(byteLength / 8) * 8);
  nextFakePointer += BigInt(span);
  return ptr;
}

/** [ptr, bytes] for arbitrary bytes sent with a request (e.g. PublishDataRequest.data_ptr); no copy. */
export function dataBuffer(bytes: Uint8Array): [ptr: bigint, bytes: Uint8Array] {
  return [allocatePointer(bytes.byteLength), bytes];
}

/**
 * [ptr, bytes] for samples sent with a request: put `ptr` in AudioFrameBufferInfo.data_ptr and pass
 * `[[ptr, bytes]]` as the request's buffers. `bytes` is a view over `samples` (no copy).
 */
export function audioBuffer(samples: Int16Array): [ptr: bigint, bytes: Uint8Array] {
  return dataBuffer(new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength));
}
