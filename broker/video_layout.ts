// How many bytes a VideoBufferInfo's data_ptr covers, from its type, dimensions, strides and
// components, as liblivekit_ffi reads them (livekit-ffi/src/server/colorcvt): packed formats are
// read as `stride × height` bytes at data_ptr; planar formats plane by plane, each component's
// data_ptr and size, the first plane starting at data_ptr.
import type { SchemaMessage } from './livekit_schema.js';

// livekit.proto.VideoBufferType
export const PACKED_BYTES_PER_PIXEL: Readonly<Record<number, number>> = { 0: 4, 1: 4, 2: 4, 3: 4, 4: 3 }; // RGBA ABGR ARGB BGRA RGB24

interface ComponentLike {
  size?: number;
}

export function videoFrameBytes(info: SchemaMessage): number {
  const type = Number(info.type ?? 0);
  if (PACKED_BYTES_PER_PIXEL[type] !== undefined) return Number(info.stride ?? 0) * Number(info.height ?? 0);
  const components = (info.components as ComponentLike[] | undefined) ?? [];
  return Number(components[0]?.size ?? 0);
}
