// Native callback path, without gRPC or the broker: the stress stand-in for liblivekit_ffi
// (test/fixtures/stress_ffi.c) fires raw events from 8 native threads into either
//  - our C queue shim, drained on the event loop by EventPump (what the broker does), or
//  - a plain koffi JS callback (the anchor: what loading the library naively would do),
// with the JS loop idle and with it deliberately blocked. The stress library times every callback
// call, i.e. how long a library thread is kept inside the callback.
//
// Each variant runs in a fresh child process: the stress library keeps one callback per process,
// and the shim's counters (max callback time) are process-wide.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import koffi from 'koffi';
import { EventPump } from '../broker/native/event_pump.js';
import { NativeShim } from '../broker/native/shim.js';
import { nativeBuildDir } from '../broker/paths.js';
import { runInChild } from './child.js';
import { busyWait, log, nowMs, round } from './stats.js';

const STRESS_PATH = path.join(nativeBuildDir, 'libstress_ffi.so');
const THREADS = 8;
const PAYLOAD_BYTES = 64;
const BLOCK_MS = 200;
const MIN_BLOCKS = 5;
const CHILD_TIMEOUT_MS = 180_000;
const DRAIN_TIMEOUT_MS = 120_000;

export type CallbackKind = 'shim' | 'koffi';
export type LoopMode = 'idle' | 'blocked';

export interface VariantSpec {
  callback: CallbackKind;
  loop: LoopMode;
  threads: number;
  eventsPerThread: number;
  payloadBytes: number;
  blockMs: number;
  minBlocks: number;
  /** Paced emission: after every `burst` events a thread sleeps `pauseUs` (0: as fast as it can). */
  burst: number;
  pauseUs: number;
}

export interface VariantResult {
  callback: CallbackKind;
  loop: LoopMode;
  threads: number;
  events_per_thread: number;
  payload_bytes: number;
  /** Events per thread per ms when paced, else null (unpaced: the threads only emit). */
  paced_events_per_ms: number | null;
  events_drained: number;
  order_errors: number;
  wall_s: number | null;
  events_per_s: number | null;
  /** Blocked loop only: how many busy-waits of block_ms ran (at least min_blocks, and until the emitters were done). */
  blocks?: number;
  block_ms?: number;
  /** Events the library threads had handed over when the last block ended (koffi: calls JS had completed). */
  emitted_while_blocked?: number;
  /** Time each library thread spent inside one callback call (stress_stats, log-linear histogram). */
  callback_us: { p50: number | null; p99: number | null; max: number | null; mean: number | null };
  /** Shim only: the shim's own measure of its longest callback (process-wide, this variant only). */
  shim_callback_max_us?: number | null;
  shim_callback_mean_us?: number | null;
}

/** Per-thread order check of the raw payloads: u32 thread, u32 seq (little-endian). */
class OrderCounter {
  total = 0;
  orderErrors = 0;
  private readonly next: Uint32Array;

  constructor(threads: number) {
    this.next = new Uint32Array(threads);
  }

  add(b: Uint8Array): void {
    this.total++;
    const thread = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
    const seq = (b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24)) >>> 0;
    if (thread >= this.next.length || seq !== this.next[thread]) {
      this.orderErrors++;
      if (thread < this.next.length) this.next[thread] = seq + 1;
    } else {
      this.next[thread] = seq + 1;
    }
  }
}

function loadStress() {
  if (!fs.existsSync(STRESS_PATH)) throw new Error(`${STRESS_PATH} missing; run "node scripts/build-native.js"`);
  const lib = koffi.load(STRESS_PATH);
  const FfiCallbackFn = koffi.proto('void FfiCallbackFn(const uint8_t *data, size_t len)');
  return {
    callbackType: koffi.pointer(FfiCallbackFn),
    // The shim's callback is a plain native address, hence void *.
    initializeAddress: lib.func('void livekit_ffi_initialize(void *cb, bool capture_logs, const char *sdk, const char *sdk_version)'),
    initializeCallback: lib.func('void livekit_ffi_initialize(FfiCallbackFn *cb, bool capture_logs, const char *sdk, const char *sdk_version)'),
    run: lib.func('int stress_run(uint32_t threads, uint32_t events_per_thread, uint32_t payload_len)'),
    wait: lib.func('void stress_wait(void)'),
    stats: lib.func('void stress_stats(uint64_t *out)'),
    setPacing: lib.func('void stress_set_pacing(uint32_t burst, uint32_t pause_us)'),
  };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message())), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** One variant, in this process (a child of run.js). */
export async function runVariant(spec: VariantSpec): Promise<VariantResult> {
  const stress = loadStress();
  const total = spec.threads * spec.eventsPerThread;
  const counter = new OrderCounter(spec.threads);
  let lastAt = 0;
  let allDrained!: () => void;
  const drained = new Promise<void>((resolve) => (allDrained = resolve));
  const onEvent = (bytes: Uint8Array) => {
    counter.add(bytes);
    if (counter.total === total) {
      lastAt = nowMs();
      allDrained();
    }
  };

  let shim: NativeShim | undefined;
  let pump: EventPump | undefined;
  let registered: unknown;
  if (spec.callback === 'shim') {
    shim = new NativeShim();
    pump = new EventPump(shim, (events) => {
      for (const e of events) onEvent(e.bytes);
    });
    pump.start();
    stress.initializeAddress(shim.callbackAddress, false, 'bench', '0');
  } else {
    // Copies the payload, as any real consumer must: the memory is valid only during the call.
    registered = koffi.register((ptr: unknown, len: number | bigint) => onEvent(new Uint8Array(koffi.view(ptr, Number(len))).slice()), stress.callbackType);
    stress.initializeCallback(registered, false, 'bench', '0');
  }

  // Events the library threads have handed over so far: for the shim, every push; for koffi, a
  // call returns only after JS has run it, so the drained count is all there is.
  const emitted = () => (shim !== undefined ? Number(shim.stats().pushed) : counter.total);

  stress.setPacing(spec.burst, spec.pauseUs);
  const startedAt = nowMs();
  if (stress.run(spec.threads, spec.eventsPerThread, spec.payloadBytes) !== 0) throw new Error('stress_run failed');
  let blocks = 0;
  let emittedWhileBlocked = 0;
  if (spec.loop === 'blocked') {
    // The loop is kept busy for at least minBlocks blocks and for as long as the library threads
    // are emitting; between blocks it gets one turn (I/O callbacks, immediates), like a process
    // that is mostly stuck in synchronous work.
    while (blocks < spec.minBlocks || emitted() < total) {
      busyWait(spec.blockMs);
      blocks++;
      emittedWhileBlocked = emitted();
      await turn();
    }
  }
  // Also what keeps the process alive meanwhile: the pump's wake-up pipe is unref'd, and a
  // process exiting under running library threads crashes.
  await withTimeout(drained, DRAIN_TIMEOUT_MS, () => `only ${counter.total} of ${total} events arrived in ${DRAIN_TIMEOUT_MS} ms`);

  // stress_wait joins the threads, so call it only once they are out of their callbacks: their
  // run records its statistics only after its last callback has returned.
  const stats = new BigUint64Array(5);
  for (const deadline = nowMs() + 10_000; ; ) {
    stress.stats(stats);
    if (Number(stats[0]) === total) break;
    if (nowMs() > deadline) throw new Error(`stress run did not finish: ${stats[0]} of ${total} callbacks recorded`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  stress.wait();
  pump?.stop();
  if (registered !== undefined) koffi.unregister(registered as bigint);

  const wallMs = lastAt - startedAt;
  const us = (ns: bigint | undefined) => round(Number(ns ?? 0n) / 1000, 2);
  const result: VariantResult = {
    callback: spec.callback,
    loop: spec.loop,
    threads: spec.threads,
    events_per_thread: spec.eventsPerThread,
    payload_bytes: spec.payloadBytes,
    paced_events_per_ms: spec.burst > 0 ? (spec.burst * 1000) / spec.pauseUs : null,
    events_drained: counter.total,
    order_errors: counter.orderErrors,
    wall_s: round(wallMs / 1000, 3),
    events_per_s: round(total / (wallMs / 1000), 0),
    callback_us: { p50: us(stats[1]), p99: us(stats[2]), max: us(stats[3]), mean: us(stats[4]) },
  };
  if (spec.loop === 'blocked') {
    result.blocks = blocks;
    result.block_ms = spec.blockMs;
    result.emitted_while_blocked = emittedWhileBlocked;
  }
  if (shim !== undefined) {
    const s = shim.stats();
    result.shim_callback_max_us = us(s.callbackMaxNs);
    result.shim_callback_mean_us = round(Number(s.callbackTotalNs) / Math.max(1, Number(s.pushed)) / 1000, 3);
  }
  return result;
}

export interface NativeQueueReport {
  native_queue: { idle: VariantResult; blocked: VariantResult; paced_idle: VariantResult; paced_blocked: VariantResult; shim_callback_max_us: number | null; note: string };
  koffi_js_callback: { idle: VariantResult; blocked: VariantResult; paced_idle: VariantResult; note: string };
}

export async function nativeQueue(quick: boolean): Promise<NativeQueueReport> {
  // Sized for ~1-2 s of draining (quick: a fraction). The koffi callback with a blocked loop
  // completes about one call per thread per block, so it gets a far smaller run.
  const perThread = {
    shim: quick ? 100_000 : 400_000,
    koffi: quick ? 5_000 : 30_000,
    koffiBlocked: quick ? 5 : 25,
  };
  // Paced like the core test: 2 events per ms per thread (16,000/s in all), like media-driven threads.
  const PACED = { burst: 2, pauseUs: 1000, perThread: quick ? 1000 : 4000 };
  const spec = (callback: CallbackKind, loop: LoopMode, eventsPerThread: number, paced = false): VariantSpec => ({
    callback,
    loop,
    threads: THREADS,
    eventsPerThread,
    payloadBytes: PAYLOAD_BYTES,
    blockMs: BLOCK_MS,
    minBlocks: MIN_BLOCKS,
    burst: paced ? PACED.burst : 0,
    pauseUs: paced ? PACED.pauseUs : 0,
  });
  const variant = async (s: VariantSpec) => {
    log(`native_queue: ${s.callback} callback, loop ${s.loop}, ${s.threads} x ${s.eventsPerThread} events`);
    const r = await runInChild<VariantResult>('native_queue', s, CHILD_TIMEOUT_MS);
    log(`  ${r.events_per_s} events/s, callback p99 ${r.callback_us.p99} us, max ${r.callback_us.max} us`);
    return r;
  };
  const shimIdle = await variant(spec('shim', 'idle', perThread.shim));
  const shimBlocked = await variant(spec('shim', 'blocked', perThread.shim));
  const koffiIdle = await variant(spec('koffi', 'idle', perThread.koffi));
  const koffiBlocked = await variant(spec('koffi', 'blocked', perThread.koffiBlocked));
  const shimPacedIdle = await variant(spec('shim', 'idle', PACED.perThread, true));
  const shimPacedBlocked = await variant(spec('shim', 'blocked', PACED.perThread, true));
  const koffiPacedIdle = await variant(spec('koffi', 'idle', PACED.perThread, true));
  const maxOf = (...v: (number | null | undefined)[]) => Math.max(...v.map((x) => x ?? 0));
  return {
    native_queue: {
      idle: shimIdle,
      blocked: shimBlocked,
      paced_idle: shimPacedIdle,
      paced_blocked: shimPacedBlocked,
      shim_callback_max_us: maxOf(shimIdle.shim_callback_max_us, shimBlocked.shim_callback_max_us),
      note:
        `the shim never waits for JS; unpaced, ${THREADS} CPU-bound emitters, the JS thread and V8's helpers share ${os.cpus().length} CPUs, ` +
        `and the multi-ms maxima are an emitter descheduled mid-call; paced (${PACED.burst} events/ms/thread) the maximum is the callback's own`,
    },
    koffi_js_callback: {
      idle: koffiIdle,
      blocked: koffiBlocked,
      paced_idle: koffiPacedIdle,
      note:
        `blocked: only ${perThread.koffiBlocked} events per thread (idle: ${perThread.koffi}), because each native thread waits inside ` +
        `the callback until the JS loop gets a turn: ${round(koffiBlocked.events_drained / Math.max(1, koffiBlocked.blocks ?? 1), 1)} ` +
        `events (all threads together) got through per ${BLOCK_MS} ms block`,
    },
  };
}
