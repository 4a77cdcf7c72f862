// Video frames across the process boundary: build a VideoBufferInfo whose pointers (fake, see
// allocatePointer) point inside one Buffer sent with the request, and read the planes of a frame
// the broker sent back. The layouts are the ones liblivekit_ffi 0.12.75 demands (the broker
// refuses others, see broker/video_layout.ts): packed types are `stride × height` bytes; planar
// types are planes of exactly `stride × rows` bytes (I010: 2 × stride × rows, its strides count
// 16-bit samples), rows being height or (height + 1) / 2 for 4:2:0 chroma.
import { VideoBufferInfo, VideoBufferInfo_ComponentInfo } from '@livekit/rtc-ffi-bindings/proto/video_frame_pb.js';
import { VideoBufferType, packedBytesPerPixel, planeRules } from '../proto/video_planes.js';
import { allocatePointer, bufferAt, type BufferMap } from './media.js';

export { VideoBufferType, packedBytesPerPixel };

export interface VideoPlaneLayout {
  /** Y, U, V, A, UV, or the type's name for a packed frame. */
  name: string;
  /** Bytes of one row of pixels (excluding stride padding). */
  rowBytes: number;
  rows: number;
  /** Bytes per sample: 2 for I010, else 1. Strides of I010 planes count samples, not bytes. */
  sampleBytes: 1 | 2;
}

/** The planes of a frame of `type` (one for a packed type), in VideoBufferInfo.components order. */
export function videoPlaneLayout(type: VideoBufferType, width: number, height: number): VideoPlaneLayout[] {
  const bpp = packedBytesPerPixel(type);
  if (bpp !== undefined) return [{ name: VideoBufferType[type], rowBytes: width * bpp, rows: height, sampleBytes: 1 }];
  const rules = planeRules(type, width, height);
  if (rules === undefined) throw new RangeError(`unknown VideoBufferType ${String(type)}`);
  return rules.map((r) => ({ name: r.name, rowBytes: r.samples * r.sampleBytes, rows: r.rows, sampleBytes: r.sampleBytes }));
}

export interface VideoFrameOptions {
  /**
   * Strides in samples (bytes, except I010), one per plane. Default: from the data when `planes`
   * is an array (each plane's length / rows), else tight (the plane's width).
   */
  strides?: readonly number[];
}

export interface VideoFrameBuffer {
  info: VideoBufferInfo;
  /** Pass as the request's buffers: one [ptr, bytes] holding every plane. */
  buffers: [ptr: bigint, bytes: Uint8Array][];
}

/**
 * A VideoBufferInfo for a frame sent with a request (CaptureVideoFrameRequest.buffer,
 * VideoConvertRequest.buffer). `data` is either the whole frame in one Uint8Array (packed bytes, or
 * planes back to back) or one Uint8Array per plane (planar types; copied into one buffer).
 * data_ptr and every component's data_ptr point inside the single buffer returned.
 */
export function videoFrameBuffer(
  type: VideoBufferType,
  width: number,
  height: number,
  data: Uint8Array | readonly Uint8Array[],
  options: VideoFrameOptions = {},
): VideoFrameBuffer {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`frame size ${width}×${height}: width and height must be positive integers`);
  }
  const layout = videoPlaneLayout(type, width, height);
  const planes = Array.isArray(data) ? (data as readonly Uint8Array[]) : undefined;
  if (planes !== undefined && planes.length !== layout.length) {
    throw new RangeError(`${VideoBufferType[type]} has ${layout.length} planes (${layout.map((p) => p.name).join(', ')}), got ${planes.length}`);
  }
  const strides = layout.map((plane, i) => {
    const given = options.strides?.[i];
    if (given !== undefined) return given;
    if (planes !== undefined) return planes[i]!.byteLength / plane.rows / plane.sampleBytes;
    if (packedBytesPerPixel(type) !== undefined) return (data as Uint8Array).byteLength / plane.rows;
    return plane.rowBytes / plane.sampleBytes;
  });
  const sizes = layout.map((plane, i) => {
    const stride = strides[i]!;
    if (!Number.isInteger(stride) || stride * plane.sampleBytes < plane.rowBytes) {
      throw new RangeError(`${VideoBufferType[type]} ${plane.name} plane: stride ${stride} (from the data or options) must be an integer ≥ ${plane.rowBytes / plane.sampleBytes}`);
    }
    return stride * plane.rows * plane.sampleBytes;
  });
  const total = sizes.reduce((a, b) => a + b, 0);

  let bytes: Uint8Array;
  if (planes !== undefined) {
    bytes = new Uint8Array(total);
    let offset = 0;
    for (const [i, plane] of planes.entries()) {
      if (plane.byteLength !== sizes[i]) throw new RangeError(`${VideoBufferType[type]} ${layout[i]!.name} plane has ${plane.byteLength} bytes, its stride and rows make ${sizes[i]}`);
      bytes.set(plane, offset);
      offset += sizes[i]!;
    }
  } else {
    bytes = data as Uint8Array;
    if (bytes.byteLength < total) throw new RangeError(`${VideoBufferType[type]} ${width}×${height} takes ${total} bytes, got ${bytes.byteLength}`);
  }

  const ptr = allocatePointer(bytes.byteLength);
  const info = new VideoBufferInfo({ type, width, height, dataPtr: ptr });
  if (packedBytesPerPixel(type) !== undefined) {
    info.stride = strides[0]!;
  } else {
    let offset = 0;
    info.components = layout.map((_, i) => {
      const component = new VideoBufferInfo_ComponentInfo({ dataPtr: ptr + BigInt(offset), stride: strides[i]!, size: sizes[i]! });
      offset += sizes[i]!;
      return component;
    });
  }
  return { info, buffers: [[ptr, bytes]] };
}

/** The fields of a VideoBufferInfo that locate a frame's planes (v1 message or plain object). */
export interface VideoBufferInfoLike {
  type?: VideoBufferType;
  width?: number;
  height?: number;
  dataPtr?: bigint;
  stride?: number;
  components?: readonly { dataPtr?: bigint; stride?: number; size?: number }[];
}

export interface VideoPlane {
  /** Y, U, V, A, UV, or the type's name for a packed frame. */
  name: string;
  /** The plane's bytes: rows × stride (a view into the received buffers, not a copy). */
  data: Uint8Array;
  /** Bytes from one row to the next (I010: 2 × the component's stride). */
  stride: number;
  /** Bytes of pixels in a row. */
  rowBytes: number;
  rows: number;
}

/**
 * The planes of a frame received from the broker (VideoStreamEvent.frame_received.buffer.info,
 * VideoConvertResponse.buffer.info), as views into `buffers`. Throws RangeError when a plane's
 * memory is missing or short.
 */
export function videoPlanes(buffers: BufferMap, info: VideoBufferInfoLike): VideoPlane[] {
  const type = info.type ?? VideoBufferType.RGBA;
  const width = info.width ?? 0;
  const height = info.height ?? 0;
  const layout = videoPlaneLayout(type, width, height);
  const bpp = packedBytesPerPixel(type);
  if (bpp !== undefined) {
    if (info.dataPtr === undefined || info.dataPtr === 0n) throw new RangeError(`${VideoBufferType[type]} frame info has no data_ptr`);
    const stride = info.stride ?? width * bpp;
    const plane = layout[0]!;
    return [{ name: plane.name, data: bufferAt(buffers, info.dataPtr, stride * height), stride, rowBytes: plane.rowBytes, rows: plane.rows }];
  }
  const components = info.components ?? [];
  if (components.length < layout.length) {
    throw new RangeError(`${VideoBufferType[type]} frame info has ${components.length} components, ${layout.length} expected`);
  }
  return layout.map((plane, i) => {
    const component = components[i]!;
    const stride = (component.stride ?? 0) * plane.sampleBytes;
    const size = component.size ?? 0;
    if (component.dataPtr === undefined || component.dataPtr === 0n) throw new RangeError(`${VideoBufferType[type]} ${plane.name} plane has no data_ptr`);
    return { name: plane.name, data: bufferAt(buffers, component.dataPtr, size), stride, rowBytes: plane.rowBytes, rows: plane.rows };
  });
}
