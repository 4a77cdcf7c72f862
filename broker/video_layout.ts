// VideoBufferInfo as liblivekit_ffi 0.12.75 reads and writes it, and what the broker refuses so
// that a worker can never make the library read out of bounds or panic. The library is built with
// panic = "abort": any panic ends the broker process and every session with it.
//
// What the library does with a VideoBufferInfo (livekit-ffi/src/server/colorcvt, imgproc/src/colorcvt,
// libwebrtc/src/video_frame.rs):
// - Packed types (RGBA ABGR ARGB BGRA RGB24) read `stride × height` bytes at data_ptr, stride
//   defaulting to width × bytes per pixel when unset; imgproc asserts width, height > 0 and
//   stride ≥ width × bytes per pixel. components are ignored.
// - Planar types read only their components (data_ptr is ignored): components[i].size bytes at
//   components[i].data_ptr. CaptureVideoFrameRequest copies each plane with copy_from_slice into a
//   libwebrtc buffer made with_strides(width, height, strides), whose planes are stride × rows bytes
//   (rows: height, or (height + 1) / 2 for 4:2:0 chroma), so a size other than exactly
//   stride × rows panics. VideoConvertRequest asserts (imgproc) size ≥ stride × rows and
//   stride ≥ the plane's width. Indexing a missing component panics.
// - An unknown type value decodes as RGBA in the library (prost's default).
// Outputs (VideoConvertResponse, VideoStreamEvent.frame_received) come from one Box<[u8]> holding
// the planes back to back with tight strides, data_ptr at its start (= components[0]); every
// component lies inside it, except with I444 → I444 (cvt_i444), whose V component points at the
// *input* V plane: for VideoConvert that is the broker's copy of the request, still allocated when
// the output is copied; for a stream it is the libwebrtc frame, already freed (hence captured I444
// frames are refused).
import type { SchemaMessage } from './livekit_schema.js';
import { VideoBufferType as VideoType, packedBytesPerPixel, planeRules } from '../proto/video_planes.js';

const TYPE_NAMES = ['RGBA', 'ABGR', 'ARGB', 'BGRA', 'RGB24', 'I420', 'I420A', 'I422', 'I444', 'I010', 'NV12'] as const;

export function videoTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `VideoBufferType ${type}`;
}

/** The largest width or height the broker passes to the library. */
export const MAX_VIDEO_DIMENSION = 16384;

/** The smallest width and height of a captured frame (see videoBufferProblem). */
export const MIN_CAPTURE_DIMENSION = 4;

const U32_MAX = 0xffff_ffff;
const I32_MAX = 0x7fff_ffff;
/** Room left in a message for what surrounds a frame's bytes. */
const MESSAGE_OVERHEAD = 4096;

interface ComponentLike {
  size?: number;
  stride?: number;
}

/**
 * How many bytes a VideoBufferInfo's data_ptr covers: packed, stride (or width × bytes per
 * pixel when unset, as the library reads it) × height; planar, the first plane (components[0]),
 * which starts at data_ptr in every buffer the library hands out.
 */
export function videoFrameBytes(info: SchemaMessage): number {
  const type = Number(info.type ?? 0);
  const bpp = packedBytesPerPixel(type);
  if (bpp !== undefined) return packedStride(info, bpp) * Number(info.height ?? 0);
  const components = (info.components as ComponentLike[] | undefined) ?? [];
  return Number(components[0]?.size ?? 0);
}

function packedStride(info: SchemaMessage, bpp: number): number {
  return info.stride === undefined ? Number(info.width ?? 0) * bpp : Number(info.stride);
}

type Use = 'capture' | 'convert' | undefined;

function useOf(request: SchemaMessage | undefined): Use {
  switch (request?.getType().typeName) {
    case 'livekit.proto.CaptureVideoFrameRequest':
      return 'capture';
    case 'livekit.proto.VideoConvertRequest':
      return 'convert';
    default:
      return undefined;
  }
}

/**
 * Why liblivekit_ffi must not see this VideoBufferInfo, or undefined when it is safe. `request` is
 * the message holding it (CaptureVideoFrameRequest or VideoConvertRequest): rules differ between
 * the two (see the file header). Without it the rules of both apply, which refuses the types whose
 * rules conflict (ABGR, I444, I010, NV12). `maxBytes` (the message limit) bounds the largest
 * buffer the library can hand back for the frame (RGBA), which the broker must send in one message.
 * Messages name the field (from the request when it is given, e.g. buffer.components[1].size) and
 * the value expected.
 */
export function videoBufferProblem(info: SchemaMessage, request?: SchemaMessage, maxBytes?: number): string | undefined {
  const use = useOf(request);
  const f = request === undefined ? '' : 'buffer.'; // field paths from the request when it is known
  const type = Number(info.type ?? 0);
  const width = Number(info.width ?? 0);
  const height = Number(info.height ?? 0);
  const name = videoTypeName(type);

  if (!Number.isInteger(type) || type < 0 || type >= TYPE_NAMES.length) {
    return `${f}type = ${type} is not a VideoBufferType (0 RGBA … 10 NV12); the library would read it as RGBA`;
  }
  for (const [field, value] of [['width', width], ['height', height]] as const) {
    if (!(value >= 1 && value <= MAX_VIDEO_DIMENSION)) return `${f}${field} = ${value}; it must be 1 to ${MAX_VIDEO_DIMENSION}`;
  }
  // WebRTC adapts a captured frame on its way to the track and a side of 3 pixels or less comes out
  // 0 ("Check failed: width > 0", video_frame_buffer.cc; fuzz seed 256467137). Measured: 3×3, 4×3
  // and 8×2 abort, 4×4 and 1000×4 work, whatever the source's resolution (1×1 to 1600×16).
  if (use === 'capture' && (width < MIN_CAPTURE_DIMENSION || height < MIN_CAPTURE_DIMENSION)) {
    return `${f}width × height = ${width}×${height}: captured frames must be at least ${MIN_CAPTURE_DIMENSION}×${MIN_CAPTURE_DIMENSION}`;
  }
  if (maxBytes !== undefined && width * height * 4 + MESSAGE_OVERHEAD > maxBytes) {
    // The largest buffer the library makes of a frame is RGBA (VideoConvert to a packed type, or a
    // stream with format RGBA), and the broker sends it back in one message.
    return `${f}width × height = ${width}×${height}: the library hands such a frame back as up to ${width * height * 4} bytes (RGBA), over the ${maxBytes}-byte message limit`;
  }
  // The library converts strides to i32 with unwrap(), even those it then ignores: stride
  // 2^31 panicked in video_frame.rs (fuzz seed 252423094).
  const strides: [string, unknown][] = [['stride', info.stride], ...((info.components ?? []) as ComponentLike[]).map((c, i) => [`components[${i}].stride`, c.stride] as [string, unknown])];
  for (const [field, value] of strides) {
    if (value !== undefined && Number(value) > I32_MAX) return `${f}${field} = ${Number(value)} is over 2^31 − 1`;
  }
  const hazard = typeHazard(type, use, request, f);
  if (hazard !== undefined) return hazard;

  const bpp = packedBytesPerPixel(type);
  if (bpp !== undefined) {
    const stride = packedStride(info, bpp);
    if (stride < width * bpp) {
      return `${f}stride = ${stride} is below width × ${bpp} = ${width * bpp} bytes, the least a ${width}-pixel ${name} row takes`;
    }
    if (stride * height > U32_MAX) return `${f}stride × height = ${stride} × ${height} exceeds 2^32 − 1 bytes`;
  } else {
    const planes = planeRules(type, width, height)!;
    const components = (info.components as ComponentLike[] | undefined) ?? [];
    if (components.length !== planes.length) {
      return `${f}components: ${name} needs ${planes.length} components (${planes.map((p) => p.name).join(', ')}), got ${components.length}`;
    }
    for (const [i, plane] of planes.entries()) {
      const stride = Number(components[i]!.stride ?? 0);
      const size = Number(components[i]!.size ?? 0);
      const what = `the ${name} ${plane.name} plane of a ${width}×${height} frame`;
      if (stride < plane.samples) {
        return `${f}components[${i}].stride = ${stride} is below ${plane.samples}, the width of ${what}${plane.sampleBytes === 2 ? ' (I010 strides count 16-bit samples)' : ''}`;
      }
      const expected = stride * plane.rows * plane.sampleBytes;
      if (size !== expected) {
        const formula = plane.sampleBytes === 2 ? `2 bytes × stride ${stride} × ${plane.rows} rows` : `stride ${stride} × ${plane.rows} rows`;
        return `${f}components[${i}].size = ${size}; ${what} takes exactly ${expected} bytes (${formula})`;
      }
    }
  }

  return undefined;
}

// Types the library aborts on (or hands out freed memory for) in one use or the other.
function typeHazard(type: number, use: Use, request: SchemaMessage | undefined, f: string): string | undefined {
  const unknownUse = use === undefined ? '; this broker refuses it in every request until it can tell a capture from a convert' : '';
  if (use !== 'capture') {
    if (type === VideoType.ABGR) {
      return `${f}type = ABGR: VideoConvertRequest aborts liblivekit_ffi 0.12.75 on ABGR input (cvt_abgr asserts RGBA)${unknownUse}; reorder the bytes to RGBA in the worker`;
    }
    if (use === 'convert') {
      const dstType = Number(request!.dstType ?? 0);
      if (!Number.isInteger(dstType) || dstType < 0 || dstType >= TYPE_NAMES.length) {
        return `dst_type = ${dstType} is not a VideoBufferType (0 RGBA … 10 NV12)`;
      }
      if (type === VideoType.NV12 && dstType === VideoType.NV12) {
        return 'buffer.type = NV12 with dst_type = NV12: VideoConvertRequest aborts liblivekit_ffi 0.12.75 (it writes the UV plane with stride (width + 1) / 2, which imgproc rejects); the frame is NV12 already';
      }
    }
  }
  if (use !== 'convert') {
    const toI420 = use === 'capture' ? `; convert it to I420 first (VideoConvertRequest ${videoTypeName(type)} → I420)` : '';
    if (type === VideoType.NV12) {
      return `${f}type = NV12: an NV12 frame aborts liblivekit_ffi 0.12.75 once it reaches a video stream (libwebrtc video_frame.rs: unreachable buffer type)${unknownUse}${toI420}`;
    }
    if (type === VideoType.I010) {
      return `${f}type = I010: the library copies only half of each captured I010 plane, and a stream converting I010 frames aborts it${unknownUse}${toI420}`;
    }
    if (type === VideoType.I444) {
      return `${f}type = I444: a captured I444 frame reaches streams without a format with its V plane pointing into freed memory (cvt_i444)${unknownUse}${toI420}`;
    }
  }
  return undefined;
}

/**
 * The problem with the video buffer of a request that carries one to the library
 * (CaptureVideoFrameRequest, VideoConvertRequest), field paths from the request; undefined when
 * there is none or the request is of another kind.
 */
export function videoRequestProblem(request: SchemaMessage, maxBytes?: number): string | undefined {
  if (useOf(request) === undefined) return undefined;
  const buffer = request.buffer as SchemaMessage | undefined;
  if (buffer === undefined) return undefined; // a required field: the encoder refuses the request
  return videoBufferProblem(buffer, request, maxBytes);
}
