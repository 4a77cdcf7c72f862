// Video payload on the real liblivekit_ffi, no LiveKit server: S streams of 720p or 1080p I420
// frames captured at 30 frames/s (NewVideoSource → CreateVideoTrack → NewVideoStream, I420 out)
// and received back, through the broker beside in-process @livekit/rtc-ffi-bindings. Every frame
// crosses the process boundary twice on the broker path: in with CaptureVideoFrame, out with the
// stream's frame event. Each case runs in a child process of its own.
import { CreateVideoTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import {
  CaptureVideoFrameRequest,
  NewVideoSourceRequest,
  NewVideoStreamRequest,
  VideoBufferType,
  VideoRotation,
  VideoSourceResolution,
  VideoSourceType,
  VideoStreamType,
  type VideoBufferInfo,
} from '@livekit/rtc-ffi-bindings/proto/video_frame_pb.js';
import { startBenchBroker } from './bench_broker.js';
import { videoFrameBuffer } from '../client/video.js';
import { runInChild } from './child.js';
import { brokerPath, inProcessPath, type FfiPath, type PathKind } from './ffi_path.js';

// Room in the media lane for the frames of every stream in flight: a 1080p I420 frame is 3.1 MB,
// past the lane's 1 MiB default, which would send every frame inline.
const VIDEO_LANE = { toBrokerBytes: 32 * 1024 * 1024, toClientBytes: 64 * 1024 * 1024 };
import { procCpuS } from '../test/helpers/proc_stats.js';
import { log, nowMs, round, sleep, summarize, type Summary } from './stats.js';

const FPS = 30;
const RESOLUTIONS = [
  { name: '720p', width: 1280, height: 720 },
  { name: '1080p', width: 1920, height: 1080 },
];
const STREAM_COUNTS = [1, 4];

export interface VideoCaseSpec {
  path: PathKind;
  address?: string;
  brokerPid?: number;
  width: number;
  height: number;
  streams: number;
  warmupS: number;
  measureS: number;
}

export interface VideoCaseResult {
  path: PathKind;
  resolution: string;
  streams: number;
  frame_bytes: number;
  frames_captured: number;
  frames_received: number;
  frames_lost: number;
  capture_errors: number;
  capture_error?: string;
  /** Received frames per second, all streams together, over the measured window. */
  frames_per_s: number | null;
  /** Frame bytes moved per second (captured in + received out). */
  mb_per_s: number | null;
  latency_ms: Summary;
  capture_request_ms: Summary;
  cpu_s: { client: number; broker: number | null };
}

interface Frame {
  /** Kept referenced: in-process the library reads it through a raw pointer. */
  bytes: Uint8Array;
  info: VideoBufferInfo;
  buffers: [bigint, Uint8Array][];
}

interface Stream {
  source: bigint;
  stream: bigint;
  /** A few frames used in turn, so a frame is not rewritten while a request may still hold it. */
  ring: Frame[];
  /** Send time of capture k, by k. */
  sentAt: Map<number, number>;
  received: number;
}

const RING = 3;
// The library's video source replaces timestamp_us with its own clock, so each frame carries its
// capture number in the first bytes of its Y plane, which an I420 → I420 stream passes unchanged.
const TAG_BYTES = 4;
const writeTag = (y: Uint8Array, k: number) => new DataView(y.buffer, y.byteOffset, TAG_BYTES).setUint32(0, k, true);
const readTag = (y: Uint8Array) => new DataView(y.buffer, y.byteOffset, TAG_BYTES).getUint32(0, true);

/** The same frame info with every pointer moved from one base to another (one buffer holds all planes). */
function rebase(info: VideoBufferInfo, from: bigint, to: bigint): VideoBufferInfo {
  const moved = info.clone();
  moved.dataPtr = info.dataPtr! - from + to;
  for (const c of moved.components) c.dataPtr = c.dataPtr! - from + to;
  return moved;
}

/** One case, in a child process of run.js. */
export async function runVideoCase(spec: VideoCaseSpec): Promise<VideoCaseResult> {
  const path: FfiPath = spec.path === 'broker' ? await brokerPath(spec.address!, { clientName: 'bench-video', mediaLane: VIDEO_LANE }) : inProcessPath();
  const { width, height } = spec;
  try {
    const streams: Stream[] = [];
    const byStream = new Map<bigint, Stream>();
    for (let i = 0; i < spec.streams; i++) {
      const src = await path.call({ case: 'newVideoSource', value: new NewVideoSourceRequest({ type: VideoSourceType.VIDEO_SOURCE_NATIVE, resolution: new VideoSourceResolution({ width, height }) }) });
      if (src.case !== 'newVideoSource') throw new Error(`NewVideoSource answered ${src.case}`);
      const trk = await path.call({ case: 'createVideoTrack', value: new CreateVideoTrackRequest({ name: `bench-video-${i}`, sourceHandle: src.value.source!.handle!.id! }) });
      if (trk.case !== 'createVideoTrack') throw new Error(`CreateVideoTrack answered ${trk.case}`);
      const str = await path.call({ case: 'newVideoStream', value: new NewVideoStreamRequest({ trackHandle: trk.value.track!.handle!.id!, type: VideoStreamType.VIDEO_STREAM_NATIVE, format: VideoBufferType.I420 }) });
      if (str.case !== 'newVideoStream') throw new Error(`NewVideoStream answered ${str.case}`);
      const ring: Frame[] = [];
      for (let r = 0; r < RING; r++) {
        // A gradient, so the frame is not trivially compressible memory.
        const data = new Uint8Array((width * height * 3) / 2);
        for (let b = 0; b < data.length; b++) data[b] = (b * 7 + i * 31) & 0xff;
        const made = videoFrameBuffer(VideoBufferType.I420, width, height, data);
        const bytes = made.buffers[0]![1];
        const { ptr, buffers } = path.memory(bytes);
        ring.push({ bytes, info: rebase(made.info, made.buffers[0]![0], ptr), buffers });
      }
      const s: Stream = { source: src.value.source!.handle!.id!, stream: str.value.stream!.handle!.id!, ring, sentAt: new Map(), received: 0 };
      streams.push(s);
      byStream.set(s.stream, s);
    }
    const frameBytes = (width * height * 3) / 2;

    let measuring = false;
    const latencies: number[] = [];
    let receivedBytes = 0;
    path.onEvent((event, memory) => {
      const m = event.message;
      if (m.case !== 'videoStreamEvent' || m.value.message.case !== 'frameReceived') return;
      const at = nowMs();
      const frame = m.value.message.value;
      const s = byStream.get(m.value.streamHandle!);
      const info = frame.buffer!.info!;
      // Read every plane, as an application would (in-process this is the copy out of native memory).
      const planes = info.components.map((c) => memory.read(c.dataPtr!, c.size!));
      path.releaseEventMemory(frame.buffer!.handle?.id);
      const k = planes[0] !== undefined && planes[0].byteLength >= TAG_BYTES ? readTag(planes[0]) : -1;
      const sentAt = s?.sentAt.get(k);
      if (s === undefined || sentAt === undefined) return;
      s.sentAt.delete(k);
      const bytes = planes.reduce((a, p) => a + p.byteLength, 0);
      s.received++;
      receivedBytes += bytes;
      latencies.push(at - sentAt);
    });

    const requestTimes: number[] = [];
    let captureErrors = 0;
    let captureError: string | undefined;
    const total = Math.round((spec.warmupS + spec.measureS) * FPS);
    const firstMeasured = Math.round(spec.warmupS * FPS);
    let cpu0 = process.cpuUsage();
    let brokerCpu0: number | null = null;
    const startedAt = nowMs();
    for (let k = 0; k < total; ) {
      const due = Math.min(total, Math.floor(((nowMs() - startedAt) * FPS) / 1000) + 1);
      for (; k < due; k++) {
        if (k === firstMeasured) {
          measuring = true;
          cpu0 = process.cpuUsage();
          brokerCpu0 = procCpuS(spec.brokerPid);
          for (const s of streams) s.received = 0;
          latencies.length = 0;
          receivedBytes = 0;
        }
        for (const s of streams) {
          const frame = s.ring[k % RING]!;
          writeTag(frame.bytes, k);
          const sentAt = nowMs();
          if (measuring) s.sentAt.set(k, sentAt);
          path
            .call({ case: 'captureVideoFrame', value: new CaptureVideoFrameRequest({ sourceHandle: s.source, buffer: frame.info, timestampUs: 0n, rotation: VideoRotation.VIDEO_ROTATION_0 }) }, frame.buffers)
            .then(
              (res) => {
                if (measuring) requestTimes.push(nowMs() - sentAt);
                if (res.case !== 'captureVideoFrame') captureErrors++;
              },
              (err) => {
                captureErrors++;
                captureError ??= String(err);
              },
            );
        }
      }
      await sleep(2);
    }
    const measuredMs = nowMs() - startedAt - spec.warmupS * 1000;
    // The last frames' way back.
    for (const deadline = nowMs() + 2000; nowMs() < deadline && streams.some((s) => s.sentAt.size > 0); ) await sleep(20);
    const used = process.cpuUsage(cpu0);
    const brokerCpu1 = procCpuS(spec.brokerPid);
    const captured = spec.streams * (total - firstMeasured);
    const received = streams.reduce((a, s) => a + s.received, 0);
    return {
      path: spec.path,
      resolution: `${width}x${height}`,
      streams: spec.streams,
      frame_bytes: frameBytes,
      frames_captured: captured,
      frames_received: received,
      frames_lost: captured - received,
      capture_errors: captureErrors,
      ...(captureError !== undefined ? { capture_error: captureError } : {}),
      frames_per_s: round(received / (measuredMs / 1000), 1),
      mb_per_s: round((captured * frameBytes + receivedBytes) / 1e6 / (measuredMs / 1000), 1),
      latency_ms: summarize(latencies, 2),
      capture_request_ms: summarize(requestTimes, 2),
      cpu_s: { client: round((used.user + used.system) / 1e6, 3)!, broker: brokerCpu0 !== null && brokerCpu1 !== null ? round(brokerCpu1 - brokerCpu0, 3) : null },
    };
  } finally {
    await path.close();
  }
}

export async function videoPayload(quick: boolean): Promise<Record<string, unknown>> {
  const warmupS = quick ? 0.5 : 1;
  const measureS = quick ? 2 : 5;
  const cases: (VideoCaseResult | { path: PathKind; resolution: string; streams: number; error: string })[] = [];
  const broker = await startBenchBroker();
  try {
    for (const res of quick ? RESOLUTIONS.slice(1) : RESOLUTIONS) {
      for (const streams of STREAM_COUNTS) {
        for (const path of ['in-process', 'broker'] as const) {
          log(`video_payload: ${path}, ${streams} x ${res.name} I420 at ${FPS} fps`);
          const spec: VideoCaseSpec = { path, width: res.width, height: res.height, streams, warmupS, measureS, ...(path === 'broker' ? { address: broker.address, brokerPid: broker.proc.pid! } : {}) };
          try {
            const r = await runInChild<VideoCaseResult>('video', spec, (warmupS + measureS + 120) * 1000);
            log(`  ${r.frames_per_s} frames/s, ${r.mb_per_s} MB/s, ${r.frames_lost} lost, latency p50 ${r.latency_ms.p50} ms p99 ${r.latency_ms.p99} ms`);
            cases.push(r);
          } catch (err) {
            log(`  failed: ${String(err)}`);
            cases.push({ path, resolution: `${res.width}x${res.height}`, streams, error: String((err as Error)?.message ?? err) });
          }
          await sleep(300);
        }
      }
    }
    return {
      video_payload: {
        ffi_version: (await broker.info()).ffiVersion,
        method:
          `per stream NewVideoSource -> CreateVideoTrack -> NewVideoStream(I420); I420 frames captured at ${FPS} fps (CaptureVideoFrame, ` +
          'the capture number written into the first 4 bytes of the Y plane) and received back, every plane read; latency = receive time - ' +
          'capture send time of the frame with that number; ' +
          'mb_per_s = captured + received frame bytes per second; each case in a fresh client process.',
        fps: FPS,
        warmup_s: warmupS,
        measure_s: measureS,
        cases,
      },
    };
  } finally {
    await broker.stop();
  }
}
