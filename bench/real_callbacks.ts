// The callback paths driven by the real liblivekit_ffi the same way: the broker's native layer (our
// C queue shim, drained by EventPump; in-process, no gRPC) beside the Node-API thread-safe function
// of @livekit/rtc-ffi-bindings. The library's own threads emit one CaptureAudioFrame callback per
// capture request:
//  - burst: N captures issued back to back on the JS thread, so the loop is busy while the
//    library's threads emit and every callback queues; drained = events/s once the loop is free.
//  - paced: one capture per 0.1 ms-ish turn of the loop; delivery = request sent → callback in JS.
// The time a library thread spends in the callback is not observable from outside the library
// here (the stress stand-in measures it for the shim and koffi in native_queue.ts); both paths
// return without waiting for JavaScript.
import { AudioFrameBufferInfo, AudioSourceType, CaptureAudioFrameRequest, NewAudioSourceRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiEvent, FfiRequest, FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { DEFAULT_SDK } from '../broker/config.js';
import { EventPump } from '../broker/native/event_pump.js';
import { FfiLibrary, locateLibrary } from '../broker/native/ffi_library.js';
import { NativeShim } from '../broker/native/shim.js';
import { runInChild } from './child.js';
import { log, nowMs, round, summarize, type Summary } from './stats.js';

type Callbacks = 'shim' | 'napi';

export interface RealCallbackSpec {
  callbacks: Callbacks;
  burst: number;
  paced: number;
}

export interface RealCallbackResult {
  callbacks: Callbacks;
  burst: { captures: number; issue_ms: number | null; drain_ms: number | null; drained_events_per_s: number | null; callback_errors: number };
  paced: { captures: number; delivery_us: Summary };
}

interface Driver {
  request(message: FfiRequest['message']): FfiResponse['message'];
  /** A pointer to `bytes` that stays valid for the whole run. */
  pin(bytes: Uint8Array): bigint;
}

const SAMPLES = 48; // 1 ms at 48 kHz: small, so the copy is negligible beside the callback path

function openDriver(kind: Callbacks, onEvent: (event: FfiEvent) => void): Driver {
  if (kind === 'shim') {
    const shim = new NativeShim();
    const pump = new EventPump(shim, (events) => {
      for (const e of events) onEvent(FfiEvent.fromBinary(e.bytes));
    });
    pump.start();
    const library = new FfiLibrary(locateLibrary(undefined), shim, DEFAULT_SDK);
    return {
      request: (message) => FfiResponse.fromBinary(library.request(new FfiRequest({ message }).toBinary())!).message,
      pin: (bytes) => shim.allocCopy(bytes),
    };
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const napi = require('@livekit/rtc-ffi-bindings/native.js') as typeof import('@livekit/rtc-ffi-bindings/native.js');
  napi.livekitInitialize((data) => onEvent(FfiEvent.fromBinary(data)), false, 'bench');
  const pinned: Uint8Array[] = [];
  return {
    request: (message) => FfiResponse.fromBinary(napi.livekitFfiRequest(new FfiRequest({ message }).toBinary())).message,
    pin: (bytes) => {
      pinned.push(bytes);
      return napi.livekitRetrievePtr(bytes);
    },
  };
}

/** One path, in a child process of run.js (each path initializes the library once per process). */
export async function runRealCallbacks(spec: RealCallbackSpec): Promise<RealCallbackResult> {
  let received = 0;
  let errors = 0;
  let waiting: { count: number; done: () => void } | undefined;
  const sentAt = new Map<bigint, number>();
  const delivery: number[] = [];
  const driver = openDriver(spec.callbacks, (event) => {
    if (event.message.case !== 'captureAudioFrame') return;
    received++;
    if (event.message.value.error) errors++;
    const t = sentAt.get(event.message.value.asyncId!);
    if (t !== undefined) {
      delivery.push((nowMs() - t) * 1000);
      sentAt.delete(event.message.value.asyncId!);
    }
    if (waiting !== undefined && received >= waiting.count) waiting.done();
  });
  // The pump's wake-up pipe does not hold the loop open (the broker has its server for that).
  const keepAlive = setInterval(() => {}, 1000);
  const until = (count: number) => new Promise<void>((done) => (received >= count ? done() : (waiting = { count, done })));

  // A queue long enough that no capture waits for room: the callback fires as soon as the frame is queued.
  const source = driver.request({
    case: 'newAudioSource',
    value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1_000_000 }),
  });
  if (source.case !== 'newAudioSource') throw new Error(`NewAudioSource answered ${source.case}`);
  const capture = {
    case: 'captureAudioFrame' as const,
    value: new CaptureAudioFrameRequest({
      sourceHandle: source.value.source!.handle!.id!,
      buffer: new AudioFrameBufferInfo({ dataPtr: driver.pin(new Uint8Array(SAMPLES * 2)), numChannels: 1, sampleRate: 48000, samplesPerChannel: SAMPLES }),
    }),
  };
  const issue = () => {
    const res = driver.request(capture);
    if (res.case !== 'captureAudioFrame') throw new Error(`CaptureAudioFrame answered ${res.case}`);
    return res.value.asyncId!;
  };

  // Paced first, on an idle loop: one capture per loop turn.
  for (let i = 0; i < spec.paced; i++) {
    const t = nowMs();
    sentAt.set(issue(), t);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await until(spec.paced);

  const t0 = nowMs();
  for (let i = 0; i < spec.burst; i++) issue();
  const t1 = nowMs();
  const before = received;
  await until(spec.paced + spec.burst);
  const t2 = nowMs();
  const drained = spec.paced + spec.burst - before;
  clearInterval(keepAlive);
  return {
    callbacks: spec.callbacks,
    burst: {
      captures: spec.burst,
      issue_ms: round(t1 - t0, 1),
      drain_ms: round(t2 - t1, 1),
      drained_events_per_s: round(drained / ((t2 - t1) / 1000), 0),
      callback_errors: errors,
    },
    paced: { captures: spec.paced, delivery_us: summarize(delivery, 1) },
  };
}

export async function realCallbacks(quick: boolean): Promise<Record<string, RealCallbackResult | { callbacks: Callbacks; error: string }>> {
  const spec = (callbacks: Callbacks): RealCallbackSpec => ({ callbacks, burst: quick ? 5000 : 50_000, paced: quick ? 300 : 2000 });
  const out: Record<string, RealCallbackResult | { callbacks: Callbacks; error: string }> = {};
  for (const callbacks of ['shim', 'napi'] as const) {
    log(`real_callbacks: ${callbacks}`);
    try {
      const r = await runInChild<RealCallbackResult>('real_callbacks', spec(callbacks), 300_000);
      log(`  burst: ${r.burst.drained_events_per_s} events/s drained after ${r.burst.issue_ms} ms of requests; paced delivery p50 ${r.paced.delivery_us.p50} us p99 ${r.paced.delivery_us.p99} us`);
      out[callbacks] = r;
    } catch (err) {
      log(`  failed: ${String(err)}`);
      out[callbacks] = { callbacks, error: String((err as Error)?.message ?? err) };
    }
  }
  return out;
}
