// Video through the broker against the real liblivekit_ffi: capture into a source, frames back
// from streams on its track, VideoConvert pixel by pixel, and layouts the library would misread or
// abort on (it is built with panic = "abort": a panic would end the broker) refused up front.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FfiRequest, type FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { CreateVideoTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import {
  CaptureVideoFrameRequest,
  NewVideoSourceRequest,
  NewVideoStreamRequest,
  VideoBufferInfo,
  VideoBufferType,
  VideoConvertRequest,
  VideoRotation,
  VideoSourceResolution,
  VideoSourceType,
  VideoStreamType,
} from '@livekit/rtc-ffi-bindings/proto/video_frame_pb.js';
import { BrokerClient, type BrokerEvent } from '../client/broker_client.js';
import { BrokerError } from '../client/broker_error.js';
import { videoFrameBuffer, videoPlaneLayout, videoPlanes, type VideoFrameBuffer, type VideoPlane } from '../client/video.js';
import { MIN_CAPTURE_DIMENSION, videoBufferProblem, videoFrameBytes, videoRequestProblem } from '../broker/video_layout.js';
import type { SchemaMessage } from '../broker/livekit_schema.js';
import { startBroker, waitFor, type BrokerProcess } from './helpers/processes.js';

type Case = NonNullable<FfiRequest['message']['case']> & NonNullable<FfiResponse['message']['case']>;
type RequestValue<C extends Case> = Extract<FfiRequest['message'], { case: C }>['value'];
type ResponseValue<C extends Case> = Extract<FfiResponse['message'], { case: C }>['value'];
type Buffers = Iterable<readonly [bigint, Uint8Array]>;

const W = 320;
const H = 240;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- colour math: BT.601 limited range, as libyuv implements it --------------------------------
const clamp = (v: number) => Math.min(255, Math.max(0, Math.round(v)));
/** libyuv's integer RGB → YUV (RGBToY / RGBToU / RGBToV). */
function rgbToYuv(r: number, g: number, b: number): [number, number, number] {
  return [(66 * r + 129 * g + 25 * b + 0x1080) >> 8, (112 * b - 74 * g - 38 * r + 0x8080) >> 8, (112 * r - 94 * g - 18 * b + 0x8080) >> 8];
}
/** The exact BT.601 limited-range YUV → RGB (libyuv approximates it with 6-bit fixed point). */
function yuvToRgb(y: number, u: number, v: number): [number, number, number] {
  const c = 1.164 * (y - 16);
  return [clamp(c + 1.596 * (v - 128)), clamp(c - 0.813 * (v - 128) - 0.391 * (u - 128)), clamp(c + 2.018 * (u - 128))];
}

// ---- frames -------------------------------------------------------------------------------------
function row(plane: VideoPlane, y: number): Uint8Array {
  return plane.data.subarray(y * plane.stride, y * plane.stride + plane.rowBytes);
}

/** I420 planes of a known pattern, seeded by k (distinct Y at (0, 0) for k = 0..5). */
function i420Pattern(width: number, height: number, k: number): Uint8Array[] {
  const [yl, ul, vl] = videoPlaneLayout(VideoBufferType.I420, width, height);
  const plane = (l: typeof yl, f: (x: number, y: number) => number) => {
    const out = new Uint8Array(l!.rowBytes * l!.rows);
    for (let y = 0; y < l!.rows; y++) for (let x = 0; x < l!.rowBytes; x++) out[y * l!.rowBytes + x] = f(x, y);
    return out;
  };
  return [
    plane(yl, (x, y) => 16 + ((x + 2 * y + 37 * k) % 220)),
    plane(ul, (x, y) => 16 + ((3 * x + y + 11 * k) % 225)),
    plane(vl, (x, y) => 16 + ((x + 5 * y + 23 * k) % 225)),
  ];
}

function sameBytes(actual: Uint8Array, expected: Uint8Array, message: string): void {
  assert.ok(Buffer.compare(actual, expected) === 0, `${message}: [${actual.subarray(0, 8)} …] (${actual.byteLength} bytes), expected [${expected.subarray(0, 8)} …] (${expected.byteLength} bytes)`);
}

function samePlanes(planes: VideoPlane[], expected: Uint8Array[]): boolean {
  return planes.every((p, i) => {
    const want = expected[i]!;
    for (let y = 0; y < p.rows; y++) {
      if (Buffer.compare(row(p, y), want.subarray(y * p.rowBytes, (y + 1) * p.rowBytes)) !== 0) return false;
    }
    return true;
  });
}

const COLOURS: [number, number, number][] = [
  [255, 0, 0],
  [0, 255, 0],
  [0, 0, 255],
  [128, 128, 128],
];
/** Colour of quadrant q (0 TL, 1 TR, 2 BL, 3 BR) of quadrant image `shift`. */
const quadrantColour = (shift: number, q: number) => COLOURS[(q + shift) % 4]!;
const quadrantOf = (x: number, y: number, width: number, height: number) => (x < width / 2 ? 0 : 1) + (y < height / 2 ? 0 : 2);

/** A packed frame of four colour quadrants, bytes in the order of `type` (RGBA, BGRA, ARGB, ABGR: 4 bytes; RGB24: 3). */
function quadrantImage(type: VideoBufferType, width: number, height: number, shift: number): Uint8Array {
  const order: Record<number, string> = {
    [VideoBufferType.RGBA]: 'RGBA',
    [VideoBufferType.BGRA]: 'BGRA',
    [VideoBufferType.ARGB]: 'ARGB',
    [VideoBufferType.ABGR]: 'ABGR',
    [VideoBufferType.RGB24]: 'RGB',
  };
  const channels = order[type]!;
  const out = new Uint8Array(width * height * channels.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, b] = quadrantColour(shift, quadrantOf(x, y, width, height));
      const value: Record<string, number> = { R: r, G: g, B: b, A: 255 };
      for (let c = 0; c < channels.length; c++) out[(y * width + x) * channels.length + c] = value[channels[c]!]!;
    }
  }
  return out;
}

/** Which quadrant image (shift) an I420 frame shows, by the mean Y of each quadrant's centre; -1 if none. */
function quadrantShift(planes: VideoPlane[], width: number, height: number): number {
  const [yp] = planes;
  const centre = (q: number) => {
    const x = ((q % 2) * 2 + 1) * (width / 4);
    const y = (Math.floor(q / 2) * 2 + 1) * (height / 4);
    return row(yp!, y)[x]!;
  };
  for (let shift = 0; shift < 4; shift++) {
    if ([0, 1, 2, 3].every((q) => Math.abs(centre(q) - rgbToYuv(...quadrantColour(shift, q))[0]) <= 3)) return shift;
  }
  return -1;
}

/** Largest |difference| over the interior of every quadrant (a margin of `m` pixels from its edges). */
function quadrantError(width: number, height: number, m: number, measured: (x: number, y: number) => number[], expected: (q: number) => number[]): number {
  let worst = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const nearEdge = x % (width / 2) < m || x % (width / 2) >= width / 2 - m || y % (height / 2) < m || y % (height / 2) >= height / 2 - m;
      if (nearEdge) continue;
      const got = measured(x, y);
      const want = expected(quadrantOf(x, y, width, height));
      for (let c = 0; c < want.length; c++) worst = Math.max(worst, Math.abs(got[c]! - want[c]!));
    }
  }
  return worst;
}

describe('video through the broker with the real liblivekit_ffi', () => {
  let broker: BrokerProcess;
  let client: BrokerClient;
  const panics: string[] = [];

  async function ffi<C extends Case>(c: C, value: RequestValue<C>, buffers?: Buffers): Promise<{ value: ResponseValue<C>; buffers: Map<bigint, Uint8Array> }> {
    const { response, buffers: out } = await client.request(new FfiRequest({ message: { case: c, value } as FfiRequest['message'] }), buffers);
    assert.equal(response.message.case, c);
    return { value: response.message.value as ResponseValue<C>, buffers: out };
  }

  async function ownedHandles(): Promise<bigint> {
    const info = await broker.info();
    return info.sessions.find((s) => s.sessionId === client.sessionId)!.ownedHandles;
  }

  const capture = (source: bigint, frame: VideoFrameBuffer) =>
    ffi('captureVideoFrame', new CaptureVideoFrameRequest({ sourceHandle: source, buffer: frame.info, timestampUs: 0n, rotation: VideoRotation.VIDEO_ROTATION_0 }), frame.buffers);

  async function convert(frame: { info: VideoBufferInfo; buffers: Buffers }, dstType: VideoBufferType, flipY = false) {
    const { value, buffers } = await ffi('videoConvert', new VideoConvertRequest({ buffer: frame.info, dstType, flipY }), frame.buffers);
    assert.equal(value.message.case, 'buffer', `VideoConvert to ${VideoBufferType[dstType]}: ${String(value.message.value)}`);
    const info = value.message.value!.info!;
    assert.equal(info.type, dstType);
    return { info, planes: videoPlanes(buffers, info) };
  }

  before(async () => {
    broker = await startBroker();
    client = await BrokerClient.connect(broker.address, { clientName: 'video-test' });
    client.on('notice', (n) => n.notice.case === 'ffiPanic' && panics.push(n.notice.value.message));
  });
  after(async () => {
    await client.close();
    assert.equal(broker.proc.exitCode, null, 'the broker is still running (a library panic aborts it)');
    assert.equal(await broker.stop(), 0, 'broker exits 0 on SIGTERM');
    assert.deepEqual(panics, [], 'FfiPanic notices');
    assert.deepEqual(broker.logs.filter((r) => Number(r.level) >= 60), [], 'fatal (level 60) broker log records');
  });

  test('captured I420 and packed frames come back from streams on the track with every plane and the pattern intact; frame handles never reach the session', async (t) => {
    const source = (await ffi('newVideoSource', new NewVideoSourceRequest({ type: VideoSourceType.VIDEO_SOURCE_NATIVE, resolution: new VideoSourceResolution({ width: W, height: H }) }))).value.source!.handle!.id!;
    const track = (await ffi('createVideoTrack', new CreateVideoTrackRequest({ name: 'video-test', sourceHandle: source }))).value.track!.handle!.id!;
    const i420Stream = (await ffi('newVideoStream', new NewVideoStreamRequest({ trackHandle: track, type: VideoStreamType.VIDEO_STREAM_NATIVE }))).value.stream!.handle!.id!;
    const rgbaStream = (await ffi('newVideoStream', new NewVideoStreamRequest({ trackHandle: track, type: VideoStreamType.VIDEO_STREAM_NATIVE, format: VideoBufferType.RGBA }))).value.stream!.handle!.id!;
    assert.equal(await ownedHandles(), 4n, 'source, track and two streams');

    const received = new Map<bigint, { type: VideoBufferType; width: number; height: number; planes: VideoPlane[] }[]>([[i420Stream, []], [rgbaStream, []]]);
    const frameHandles = new Set<bigint>();
    const onEvent = ({ event, buffers }: BrokerEvent) => {
      if (event.message.case !== 'videoStreamEvent' || event.message.value.message.case !== 'frameReceived') return;
      const buffer = event.message.value.message.value.buffer!;
      frameHandles.add(buffer.handle!.id!);
      const info = buffer.info!;
      received.get(event.message.value.streamHandle!)?.push({ type: info.type!, width: info.width!, height: info.height!, planes: videoPlanes(buffers, info) });
    };
    client.on('event', onEvent);

    // I420 frames with five patterns, then quadrant images in each packed type but ABGR (which
    // this broker refuses until it tells a capture from a convert): the image's shift names its type.
    const handleSamples: bigint[] = [];
    const PATTERNS = 5;
    for (let k = 0; k < PATTERNS; k++) {
      await capture(source, videoFrameBuffer(VideoBufferType.I420, W, H, i420Pattern(W, H, k)));
      await sleep(40);
    }
    handleSamples.push(await ownedHandles());
    const PACKED = [VideoBufferType.RGBA, VideoBufferType.BGRA, VideoBufferType.ARGB, VideoBufferType.RGB24];
    for (const [shift, type] of PACKED.entries()) {
      for (let n = 0; n < 3; n++) {
        await capture(source, videoFrameBuffer(type, W, H, quadrantImage(type, W, H, shift)));
        await sleep(40);
      }
      handleSamples.push(await ownedHandles());
    }
    await waitFor(() => received.get(i420Stream)!.some((f) => f.type === VideoBufferType.I420 && quadrantShift(f.planes, W, H) === PACKED.length - 1), 5000, 'the last RGB24 frame on the I420 stream');
    await sleep(200);
    handleSamples.push(await ownedHandles());

    assert.deepEqual(handleSamples, handleSamples.map(() => 4n), 'owned handles while frames flow: only source, track and streams');
    assert.ok(frameHandles.size >= 20, `distinct frame buffer handles seen: ${frameHandles.size}`);

    // The I420 stream: every frame is I420 with three planes; the I420 patterns come back exactly.
    const i420Frames = received.get(i420Stream)!;
    const seenPatterns = new Set<number>();
    const seenShifts = new Map<number, number>();
    let black = 0;
    let worstQuadrant = 0;
    for (const f of i420Frames) {
      assert.equal(f.type, VideoBufferType.I420);
      assert.deepEqual([f.width, f.height], [W, H]);
      assert.deepEqual(f.planes.map((p) => [p.name, p.rowBytes, p.rows]), [['Y', W, H], ['U', W / 2, H / 2], ['V', W / 2, H / 2]]);
      const y00 = row(f.planes[0]!, 0)[0]!;
      if (y00 === 0 && f.planes[0]!.data.every((v) => v === 0)) {
        black++; // the source's keep-alive frames before the first capture
        continue;
      }
      const shift = quadrantShift(f.planes, W, H);
      if (shift >= 0) {
        seenShifts.set(shift, (seenShifts.get(shift) ?? 0) + 1);
        // libyuv's RGB → I420 is integer BT.601; margins skip the 2×2 blocks that straddle quadrants.
        const [yp, up, vp] = f.planes;
        worstQuadrant = Math.max(
          worstQuadrant,
          quadrantError(W, H, 2, (x, y) => [row(yp!, y)[x]!, row(up!, y >> 1)[x >> 1]!, row(vp!, y >> 1)[x >> 1]!], (q) => rgbToYuv(...quadrantColour(shift, q))),
        );
        continue;
      }
      const k = [...Array(PATTERNS).keys()].find((k) => 16 + ((37 * k) % 220) === y00);
      assert.notEqual(k, undefined, `an I420 frame that is neither black, a pattern nor a quadrant image (Y(0,0) = ${y00})`);
      assert.ok(samePlanes(f.planes, i420Pattern(W, H, k!)), `pattern ${k} came back changed`);
      seenPatterns.add(k!);
    }
    assert.ok(seenPatterns.size >= PATTERNS - 1, `I420 patterns received exactly: ${[...seenPatterns]} of ${PATTERNS}`);
    for (const [shift, type] of PACKED.entries()) assert.ok((seenShifts.get(shift) ?? 0) >= 1, `${VideoBufferType[type]} frames received as I420: ${seenShifts.get(shift) ?? 0}`);
    assert.ok(worstQuadrant <= 1, `packed → I420 off the integer BT.601 values by ${worstQuadrant}`);
    t.diagnostic(`I420 stream: ${i420Frames.length} frames (${black} black keep-alive), patterns exact: ${seenPatterns.size}/${PATTERNS}, quadrant frames per packed type: ${PACKED.map((_, s) => seenShifts.get(s) ?? 0)}, worst |Δ| vs integer BT.601: ${worstQuadrant}`);

    // The RGBA stream: the same frames, converted by the library (I420 → RGBA, BT.601).
    const rgbaFrames = received.get(rgbaStream)!.filter((f) => row(f.planes[0]!, 0).subarray(0, 3).some((v) => v !== 0)); // not black
    assert.ok(rgbaFrames.length >= 10, `non-black RGBA frames: ${rgbaFrames.length}`);
    let worstRgba = 0;
    let quadrantFrames = 0;
    for (const f of rgbaFrames) {
      assert.equal(f.type, VideoBufferType.RGBA);
      assert.deepEqual(f.planes.map((p) => [p.rowBytes, p.rows, p.stride]), [[W * 4, H, W * 4]]);
      const p = f.planes[0]!;
      const px = (x: number, y: number) => [...row(p, y).subarray(x * 4, x * 4 + 4)];
      const tl = px(W / 4, H / 4);
      const shift = [0, 1, 2, 3].find((s) => quadrantColour(s, 0).every((c, i) => Math.abs(c - tl[i]!) <= 8));
      if (shift === undefined) continue; // an I420 pattern frame
      quadrantFrames++;
      // RGB → I420 → RGB: Y, U and V each rounded to integers (±0.5), which the way back
      // amplifies (1.164 × Y, 1.596 × V, 2.018 × U: up to ±2.6), plus libyuv's fixed point (±1–2).
      worstRgba = Math.max(worstRgba, quadrantError(W, H, 2, px, (q) => [...quadrantColour(shift, q), 255]));
    }
    assert.ok(quadrantFrames >= 4, `quadrant images on the RGBA stream: ${quadrantFrames}`);
    assert.ok(worstRgba <= 5, `RGB → I420 → RGBA off the original colours by ${worstRgba}`);
    t.diagnostic(`RGBA stream: ${rgbaFrames.length} non-black frames, ${quadrantFrames} quadrant images, worst |Δ| vs the captured colours: ${worstRgba}; frame handles seen: ${frameHandles.size}, owned handles sampled: ${handleSamples}`);

    client.off('event', onEvent);
    await client.dropHandles([rgbaStream, i420Stream, track, source]);
    assert.equal(await ownedHandles(), 0n);
  });

  test('VideoConvert between formats, pixel by pixel', async (t) => {
    const before = await ownedHandles();

    // I420 → I420 with padded input strides and an odd size: a plain copy into tight strides.
    {
      const w = 33;
      const h = 17;
      const planes = i420Pattern(w, h, 3);
      const padded = planes.map((p, i) => {
        const l = videoPlaneLayout(VideoBufferType.I420, w, h)[i]!;
        const out = new Uint8Array((l.rowBytes + 7) * l.rows).fill(0xee);
        for (let y = 0; y < l.rows; y++) out.set(p.subarray(y * l.rowBytes, (y + 1) * l.rowBytes), y * (l.rowBytes + 7));
        return out;
      });
      const copy = await convert(videoFrameBuffer(VideoBufferType.I420, w, h, padded), VideoBufferType.I420);
      assert.deepEqual(copy.planes.map((p) => [p.rowBytes, p.rows, p.stride]), [[33, 17, 33], [17, 9, 17], [17, 9, 17]]);
      assert.ok(samePlanes(copy.planes, planes), 'I420 → I420 is exact');
      const flipped = await convert(videoFrameBuffer(VideoBufferType.I420, w, h, planes), VideoBufferType.I420, true);
      for (const [i, p] of flipped.planes.entries()) {
        for (let y = 0; y < p.rows; y++) sameBytes(row(p, y), planes[i]!.subarray((p.rows - 1 - y) * p.rowBytes, (p.rows - y) * p.rowBytes), `flip_y: plane ${p.name} row ${y}`);
      }
    }

    // I420 → RGBA: a grey ramp (U = V = 128, every Y from 0 to 255) and a colour pattern, against
    // exact BT.601 limited range. libyuv computes with 6-bit fixed-point coefficients (measured: 0
    // on grey, 2 on colour); ±3 leaves room for its other SIMD paths on other CPUs.
    const w = 64;
    const h = 48;
    const grey = [new Uint8Array(w * h).map((_, i) => (i * 7) % 256), new Uint8Array((w / 2) * (h / 2)).fill(128), new Uint8Array((w / 2) * (h / 2)).fill(128)];
    const colour = i420Pattern(w, h, 1);
    const rgbaOf = new Map<string, VideoPlane>();
    for (const [name, planes] of [['grey', grey], ['colour', colour]] as const) {
      const { planes: out } = await convert(videoFrameBuffer(VideoBufferType.I420, w, h, planes), VideoBufferType.RGBA);
      const p = out[0]!;
      assert.deepEqual([p.rowBytes, p.rows, p.stride], [w * 4, h, w * 4]);
      let worst = 0;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const [r, g, b] = yuvToRgb(planes[0]![y * w + x]!, planes[1]![(y >> 1) * (w / 2) + (x >> 1)]!, planes[2]![(y >> 1) * (w / 2) + (x >> 1)]!);
          const got = row(p, y).subarray(x * 4, x * 4 + 4);
          worst = Math.max(worst, Math.abs(got[0]! - r), Math.abs(got[1]! - g), Math.abs(got[2]! - b));
          assert.equal(got[3], 255, 'alpha');
        }
      }
      assert.ok(worst <= 3, `I420 → RGBA (${name}) off exact BT.601 by ${worst}`);
      t.diagnostic(`I420 → RGBA (${name}): worst |Δ| vs exact BT.601 ${worst}`);
      if (name === 'grey') {
        for (let x = 0; x < w * h; x++) {
          const v = row(p, Math.floor(x / w)).subarray((x % w) * 4, (x % w) * 4 + 3);
          assert.ok(v[0] === v[1] && v[1] === v[2], 'grey stays grey');
        }
      }
      rgbaOf.set(name, p);
    }
    // The other packed outputs are the same pixels in their byte order (RGB24: R, G, B in memory).
    const rgba = rgbaOf.get('colour')!;
    const orders: [VideoBufferType, number[]][] = [
      [VideoBufferType.BGRA, [2, 1, 0, 3]],
      [VideoBufferType.ARGB, [3, 0, 1, 2]],
      [VideoBufferType.ABGR, [3, 2, 1, 0]],
      [VideoBufferType.RGB24, [0, 1, 2]],
    ];
    for (const [type, order] of orders) {
      const { planes } = await convert(videoFrameBuffer(VideoBufferType.I420, w, h, colour), type);
      const p = planes[0]!;
      const bpp = order.length;
      for (let y = 0; y < h; y++) {
        const want = new Uint8Array(w * bpp);
        for (let x = 0; x < w; x++) for (let c = 0; c < bpp; c++) want[x * bpp + c] = row(rgba, y)[x * 4 + order[c]!]!;
        sameBytes(row(p, y), want, `I420 → ${VideoBufferType[type]} row ${y} is the RGBA row in ${VideoBufferType[type]} order`);
      }
    }

    // RGBA → I420: colours constant over 2×2 blocks, so chroma averaging is exact; libyuv's integer
    // BT.601 formulas give the expected values (±1 for its SIMD rounding).
    {
      const rgbaIn = new Uint8Array(w * h * 4);
      const blockColour = (x: number, y: number) => [((x >> 1) * 37) % 256, ((y >> 1) * 53) % 256, (((x >> 1) + (y >> 1)) * 29) % 256] as [number, number, number];
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgbaIn.set([...blockColour(x, y), 255], (y * w + x) * 4);
      const { planes } = await convert(videoFrameBuffer(VideoBufferType.RGBA, w, h, rgbaIn), VideoBufferType.I420);
      let worst = 0;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const [ey, eu, ev] = rgbToYuv(...blockColour(x, y));
          worst = Math.max(worst, Math.abs(row(planes[0]!, y)[x]! - ey), Math.abs(row(planes[1]!, y >> 1)[x >> 1]! - eu), Math.abs(row(planes[2]!, y >> 1)[x >> 1]! - ev));
        }
      }
      assert.ok(worst <= 1, `RGBA → I420 off libyuv's integer BT.601 by ${worst}`);
      t.diagnostic(`RGBA → I420: worst |Δ| vs integer BT.601 ${worst}`);
      // RGBA ↔ BGRA: byte swaps, exact.
      const { planes: bgra } = await convert(videoFrameBuffer(VideoBufferType.RGBA, w, h, rgbaIn), VideoBufferType.BGRA);
      for (let i = 0; i < w * h; i++) assert.deepEqual([...bgra[0]!.data.subarray(i * 4, i * 4 + 4)], [rgbaIn[i * 4 + 2], rgbaIn[i * 4 + 1], rgbaIn[i * 4], rgbaIn[i * 4 + 3]]);
      const { planes: rgbaAgain } = await convert(videoFrameBuffer(VideoBufferType.BGRA, w, h, new Uint8Array(bgra[0]!.data)), VideoBufferType.RGBA);
      sameBytes(rgbaAgain[0]!.data, rgbaIn, 'RGBA → BGRA → RGBA is exact');
    }

    // I422 → I420 (chroma constant over row pairs: the vertical average is exact), I420A → I420 and
    // I420A → I420A (alpha kept): exact.
    {
      const [yp, up, vp] = i420Pattern(w, h, 2);
      const tall = (p: Uint8Array) => {
        const out = new Uint8Array((w / 2) * h);
        for (let y = 0; y < h; y++) out.set(p.subarray((y >> 1) * (w / 2), ((y >> 1) + 1) * (w / 2)), y * (w / 2));
        return out;
      };
      const { planes: from422 } = await convert(videoFrameBuffer(VideoBufferType.I422, w, h, [yp!, tall(up!), tall(vp!)]), VideoBufferType.I420);
      assert.ok(samePlanes(from422, [yp!, up!, vp!]), 'I422 → I420 is exact');
      const alpha = new Uint8Array(w * h).map((_, i) => i % 251);
      const { planes: i420a } = await convert(videoFrameBuffer(VideoBufferType.I420A, w, h, [yp!, up!, vp!, alpha]), VideoBufferType.I420A);
      assert.ok(samePlanes(i420a, [yp!, up!, vp!, alpha]), 'I420A → I420A is exact');
      const { planes: dropped } = await convert(videoFrameBuffer(VideoBufferType.I420A, w, h, [yp!, up!, vp!, alpha]), VideoBufferType.I420);
      assert.ok(samePlanes(dropped, [yp!, up!, vp!]), 'I420A → I420 is exact');
    }

    // A conversion the library does not implement is its error answer, not a crash.
    const frame = videoFrameBuffer(VideoBufferType.I420, w, h, colour);
    const { value } = await ffi('videoConvert', new VideoConvertRequest({ buffer: frame.info, dstType: VideoBufferType.NV12 }), frame.buffers);
    assert.equal(value.message.case, 'error');
    assert.match(String(value.message.value), /not supported/);

    assert.equal(await ownedHandles(), before, 'converted buffers are dropped by the broker, never owned by the session');
  });

  test('layouts the library would misread or abort on get INVALID_REQUEST naming the field and the value expected', async () => {
    const source = (await ffi('newVideoSource', new NewVideoSourceRequest({ type: VideoSourceType.VIDEO_SOURCE_NATIVE, resolution: new VideoSourceResolution({ width: W, height: H }) }))).value.source!.handle!.id!;
    const track = (await ffi('createVideoTrack', new CreateVideoTrackRequest({ name: 'bad-layouts', sourceHandle: source }))).value.track!.handle!.id!;
    // A stream on the track: the frames that abort the library do it on their way into a stream.
    const stream = (await ffi('newVideoStream', new NewVideoStreamRequest({ trackHandle: track, type: VideoStreamType.VIDEO_STREAM_NATIVE }))).value.stream!.handle!.id!;

    const i420 = () => videoFrameBuffer(VideoBufferType.I420, W, H, i420Pattern(W, H, 0));
    const rgba = () => videoFrameBuffer(VideoBufferType.RGBA, W, H, new Uint8Array(W * H * 4));
    const refused = async (what: string, pattern: RegExp, request: Promise<unknown>) =>
      assert.rejects(request, (err: unknown) => {
        assert.ok(err instanceof BrokerError, `${what}: ${String(err)}`);
        assert.equal(err.codeName, 'INVALID_REQUEST', `${what}: ${err.message}`);
        assert.match(err.message, pattern, what);
        return true;
      }, what);
    const captureWith = (mutate: (f: VideoFrameBuffer) => void, frame = i420()) => {
      mutate(frame);
      return capture(source, frame);
    };
    const convertWith = (mutate: (f: VideoFrameBuffer) => void, frame: VideoFrameBuffer, dstType = VideoBufferType.I420) => {
      mutate(frame);
      return ffi('videoConvert', new VideoConvertRequest({ buffer: frame.info, dstType }), frame.buffers);
    };

    await refused('short Y plane', /(?:buffer\.)?components\[0\]\.size = 76799; the I420 Y plane of a 320×240 frame takes exactly 76800 bytes/, captureWith((f) => (f.info.components[0]!.size = W * H - 1)));
    await refused('long U plane', /(?:buffer\.)?components\[1\]\.size = 19201; .* exactly 19200 bytes \(stride 160 × 120 rows\)/, captureWith((f) => (f.info.components[1]!.size = 19201)));
    await refused('chroma stride below the plane width', /(?:buffer\.)?components\[2\]\.stride = 159 is below 160/, captureWith((f) => {
      f.info.components[2]!.stride = 159;
      f.info.components[2]!.size = 159 * 120;
    }));
    await refused('missing components', /I420 needs 3 components \(Y, U, V\), got 2/, captureWith((f) => f.info.components.pop()));
    await refused('I420A without alpha', /I420A needs 4 components/, captureWith((f) => (f.info.type = VideoBufferType.I420A)));
    await refused('stride < width × 4', /(?:buffer\.)?stride = 1276 is below width × 4 = 1280/, captureWith((f) => (f.info.stride = W * 4 - 4), rgba()));
    await refused('RGB24 stride < width × 3', /(?:buffer\.)?stride = 640 is below width × 3 = 960/, captureWith((f) => (f.info.stride = W * 2), videoFrameBuffer(VideoBufferType.RGB24, W, H, new Uint8Array(W * H * 3))));
    await refused('absurd width', /(?:buffer\.)?width = 100000; it must be 1 to 16384/, captureWith((f) => (f.info.width = 100000), rgba()));
    await refused('zero height', /(?:buffer\.)?height = 0; it must be 1 to 16384/, captureWith((f) => (f.info.height = 0)));
    await refused('unknown type', /(?:buffer\.)?type = 42 is not a VideoBufferType/, captureWith((f) => (f.info.type = 42 as VideoBufferType)));
    // No stride: the library reads width × 4 bytes a row, so the Buffer must hold width × 4 × height.
    await refused('unset stride, short Buffer', /implies 307200/, captureWith((f) => {
      f.info.stride = undefined;
      f.buffers[0]![1] = f.buffers[0]![1].subarray(0, W * 4 * H - 1);
    }, rgba()));
    await refused('a plane outside the Buffer', /has \d+ bytes, the message implies 19200/, captureWith((f) => (f.info.components[2]!.dataPtr! += 1000n)));
    await refused('NV12 capture', /(?:buffer\.)?type = NV12: an NV12 frame aborts liblivekit_ffi/, capture(source, videoFrameBuffer(VideoBufferType.NV12, W, H, new Uint8Array(W * H * 1.5))));
    await refused('I010 capture', /(?:buffer\.)?type = I010/, capture(source, videoFrameBuffer(VideoBufferType.I010, W, H, new Uint8Array(W * H * 3))));
    await refused('I444 capture', /(?:buffer\.)?type = I444/, capture(source, videoFrameBuffer(VideoBufferType.I444, W, H, new Uint8Array(W * H * 3))));
    await refused('ABGR convert', /(?:buffer\.)?type = ABGR: VideoConvertRequest aborts/, convertWith(() => {}, videoFrameBuffer(VideoBufferType.ABGR, W, H, new Uint8Array(W * H * 4))));
    await refused('NV12 → NV12 convert', /NV12/, convertWith(() => {}, videoFrameBuffer(VideoBufferType.NV12, W, H, new Uint8Array(W * H * 1.5)), VideoBufferType.NV12));
    // A 4096×4100 I420 frame (25 MB) is 67,174,400 bytes as RGBA (VideoConvert, or a stream with
    // format RGBA): more than the broker can send back in a 64 MiB message.
    const big = () => videoFrameBuffer(VideoBufferType.I420, 4096, 4100, new Uint8Array(4096 * 4100 * 1.5));
    const tooBig = /width × height = 4096×4100: the library hands such a frame back as up to 67174400 bytes \(RGBA\), over the 67108864-byte message limit/;
    await refused('convert of a frame too big to send back', tooBig, convertWith(() => {}, big(), VideoBufferType.RGBA));
    await refused('capture of a frame too big to send back', tooBig, capture(source, big()));

    // The library is unharmed: a good frame still goes through, and the broker never logged fatal.
    await capture(source, i420());
    await sleep(100);
    assert.equal(broker.proc.exitCode, null);
    assert.deepEqual(broker.logs.filter((r) => Number(r.level) >= 50 && r.component === 'livekit_ffi'), [], 'library error records');
    await client.dropHandles([stream, track, source]);
  });
});

describe('video layout rules (broker/video_layout.ts) and the client helpers', () => {
  const asSchema = (m: object) => m as unknown as SchemaMessage;
  const captureOf = (info: VideoBufferInfo) => asSchema(new CaptureVideoFrameRequest({ sourceHandle: 1n, buffer: info, timestampUs: 0n, rotation: 0 }));
  const convertOf = (info: VideoBufferInfo, dstType: VideoBufferType) => asSchema(new VideoConvertRequest({ buffer: info, dstType }));
  const ALL = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] as VideoBufferType[];

  test('every frame videoFrameBuffer builds passes the rules where the library handles its type, for odd and even sizes', () => {
    for (const [w, h] of [[1, 1], [33, 17], [320, 240]] as const) {
      for (const type of ALL) {
        const layout = videoPlaneLayout(type, w, h);
        const planes = layout.map((p) => new Uint8Array(p.rowBytes * p.rows));
        const frame = videoFrameBuffer(type, w, h, layout.length === 1 ? planes[0]! : planes);
        const info = asSchema(frame.info);
        const [[ptr, bytes]] = frame.buffers;
        // Every pointer inside the one Buffer, covering what the broker will bind.
        assert.ok(frame.info.dataPtr === ptr && videoFrameBytes(info) <= bytes.byteLength);
        for (const c of frame.info.components) assert.ok(c.dataPtr! >= ptr && c.dataPtr! - ptr + BigInt(c.size!) <= BigInt(bytes.byteLength));
        const name = VideoBufferType[type];
        const captureProblem = videoRequestProblem(captureOf(frame.info));
        if (w < MIN_CAPTURE_DIMENSION || h < MIN_CAPTURE_DIMENSION) assert.match(captureProblem ?? '', /captured frames must be at least 4×4/);
        else if (['NV12', 'I010', 'I444'].includes(name)) assert.match(captureProblem ?? '', new RegExp(`type = ${name}`));
        else assert.equal(captureProblem, undefined, `${name} ${w}×${h} capture`);
        const convertProblem = videoRequestProblem(convertOf(frame.info, VideoBufferType.I420));
        if (name === 'ABGR') assert.match(convertProblem ?? '', /ABGR/);
        else assert.equal(convertProblem, undefined, `${name} ${w}×${h} convert`);
        const anywhere = videoBufferProblem(info);
        if (['NV12', 'I010', 'I444', 'ABGR'].includes(name)) assert.match(anywhere ?? '', /until it can tell a capture from a convert/);
        else assert.equal(anywhere, undefined);
        // videoPlanes reads the same planes back.
        const back = videoPlanes(new Map([[ptr, bytes]]), frame.info);
        assert.deepEqual(back.map((p) => [p.name, p.rowBytes, p.rows]), layout.map((p) => [p.name, p.rowBytes, p.rows]));
      }
    }
  });

  test('request-specific rules: I010 sizes, NV12 → NV12, dst_type, result size', () => {
    const i010 = videoFrameBuffer(VideoBufferType.I010, 64, 48, new Uint8Array(64 * 48 * 3));
    assert.deepEqual(i010.info.components.map((c) => [c.stride, c.size]), [[64, 6144], [32, 1536], [32, 1536]], 'I010: strides in samples, 2 bytes each');
    assert.equal(videoRequestProblem(convertOf(i010.info, VideoBufferType.I420)), undefined);
    i010.info.components[0]!.size = 64 * 48;
    assert.match(videoRequestProblem(convertOf(i010.info, VideoBufferType.I420))!, /components\[0\]\.size = 3072; .* exactly 6144 bytes \(2 bytes × stride 64 × 48 rows\)/);
    const nv12 = videoFrameBuffer(VideoBufferType.NV12, 33, 17, new Uint8Array(33 * 17 + 34 * 9));
    assert.deepEqual(nv12.info.components.map((c) => [c.stride, c.size]), [[33, 561], [34, 306]], 'NV12: UV rows of 2 × ceil(w / 2) bytes');
    assert.equal(videoRequestProblem(convertOf(nv12.info, VideoBufferType.RGBA)), undefined);
    assert.match(videoRequestProblem(convertOf(nv12.info, VideoBufferType.NV12))!, /NV12 with dst_type = NV12/);
    assert.match(videoRequestProblem(convertOf(nv12.info, 99 as VideoBufferType))!, /dst_type = 99 is not a VideoBufferType/);
    const abgr = videoFrameBuffer(VideoBufferType.ABGR, 16, 16, new Uint8Array(16 * 16 * 4));
    assert.equal(videoRequestProblem(captureOf(abgr.info)), undefined, 'ABGR capture is fine (cvt_abgr_to_i420_buffer)');
    // The message limit bounds the RGBA size of a frame (4 bytes a pixel), less 4096 bytes around it.
    const limit = 64 * 1024 * 1024;
    const fits = videoFrameBuffer(VideoBufferType.I420, 4096, 4094, new Uint8Array(4096 * 4094 * 1.5));
    assert.equal(videoBufferProblem(asSchema(fits.info), convertOf(fits.info, VideoBufferType.RGBA), limit), undefined);
    const square = videoFrameBuffer(VideoBufferType.I420, 4096, 4096, new Uint8Array(4096 * 4096 * 1.5));
    assert.match(videoBufferProblem(asSchema(square.info), captureOf(square.info), limit)!, /up to 67108864 bytes \(RGBA\), over the 67108864-byte message limit/);
    // Packed frames without a stride: the library reads width × bytes per pixel.
    assert.equal(videoFrameBytes(asSchema(new VideoBufferInfo({ type: VideoBufferType.RGB24, width: 10, height: 3, dataPtr: 1n }))), 90);
    assert.equal(videoRequestProblem(asSchema(new NewVideoSourceRequest())), undefined, 'other requests are not video buffers');
  });

  test('videoFrameBuffer checks what it is given', () => {
    assert.throws(() => videoFrameBuffer(VideoBufferType.I420, 4, 4, [new Uint8Array(16), new Uint8Array(4)]), /3 planes/);
    assert.throws(() => videoFrameBuffer(VideoBufferType.I420, 4, 4, [new Uint8Array(16), new Uint8Array(3), new Uint8Array(4)]), /stride/);
    assert.throws(() => videoFrameBuffer(VideoBufferType.RGBA, 4, 4, new Uint8Array(60)), /stride/);
    assert.throws(() => videoFrameBuffer(VideoBufferType.I420, 4, 4, new Uint8Array(23)), /takes 24 bytes/);
    assert.throws(() => videoFrameBuffer(VideoBufferType.I420, 0, 4, new Uint8Array(0)), /positive/);
    const padded = videoFrameBuffer(VideoBufferType.RGBA, 4, 2, new Uint8Array(2 * 20));
    assert.equal(padded.info.stride, 20, 'packed stride from the data');
    const planes = videoPlanes(new Map(padded.buffers), padded.info);
    assert.deepEqual(planes.map((p) => [p.stride, p.rowBytes, p.rows, p.data.byteLength]), [[20, 16, 2, 40]]);
    assert.throws(() => videoPlanes(new Map(), padded.info), /no buffer/);
  });
});
