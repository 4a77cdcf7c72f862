// The plane layout of each livekit.proto.VideoBufferType, as liblivekit_ffi 0.12.75 reads and
// writes frames: packed types are one plane of `width × bytes per pixel` bytes a row; planar types
// are planes whose rows are `height` or `(height + 1) / 2` (4:2:0 chroma) long. Shared by the
// broker's checks (broker/video_layout.ts) and the TypeScript client's helpers (client/video.ts).
import { VideoBufferType } from '@livekit/rtc-ffi-bindings/proto/video_frame_pb.js';

export { VideoBufferType };

/** Bytes per pixel of the packed types (RGBA, ABGR, ARGB, BGRA: 4; RGB24: 3); undefined otherwise. */
export function packedBytesPerPixel(type: number): number | undefined {
  switch (type) {
    case VideoBufferType.RGBA:
    case VideoBufferType.ABGR:
    case VideoBufferType.ARGB:
    case VideoBufferType.BGRA:
      return 4;
    case VideoBufferType.RGB24:
      return 3;
    default:
      return undefined;
  }
}

export interface PlaneRule {
  /** Y, U, V, A, UV */
  name: string;
  /** Samples in one row: the least stride the library accepts (I010 strides count samples). */
  samples: number;
  rows: number;
  /** Bytes per sample: 2 for I010, else 1. */
  sampleBytes: 1 | 2;
}

/** The planes of a planar type, in VideoBufferInfo.components order; undefined for other types. */
export function planeRules(type: number, width: number, height: number): PlaneRule[] | undefined {
  const cw = Math.floor((width + 1) / 2);
  const ch = Math.floor((height + 1) / 2);
  const plane = (name: string, samples: number, rows: number, sampleBytes: 1 | 2 = 1): PlaneRule => ({ name, samples, rows, sampleBytes });
  switch (type) {
    case VideoBufferType.I420:
      return [plane('Y', width, height), plane('U', cw, ch), plane('V', cw, ch)];
    case VideoBufferType.I420A:
      return [plane('Y', width, height), plane('U', cw, ch), plane('V', cw, ch), plane('A', width, height)];
    case VideoBufferType.I422:
      return [plane('Y', width, height), plane('U', cw, height), plane('V', cw, height)];
    case VideoBufferType.I444:
      return [plane('Y', width, height), plane('U', width, height), plane('V', width, height)];
    case VideoBufferType.I010:
      return [plane('Y', width, height, 2), plane('U', cw, ch, 2), plane('V', cw, ch, 2)];
    case VideoBufferType.NV12:
      // Interleaved U and V samples: the UV row is 2 × ⌈width / 2⌉ bytes.
      return [plane('Y', width, height), plane('UV', 2 * cw, ch)];
    default:
      return undefined;
  }
}
