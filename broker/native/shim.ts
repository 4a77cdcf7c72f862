// koffi bindings of our C shim (callback_queue.c): the native event queue and the native memory
// the broker lends to, or copies from, liblivekit_ffi.
import fs from 'node:fs';
import path from 'node:path';
import koffi from 'koffi';
import { nativeBuildDir } from '../paths.js';

const SHIM_PATH = path.join(nativeBuildDir, 'liblkq_callback_queue.so');

export interface QueueStats {
  pushed: bigint;
  popped: bigint;
  allocFailed: bigint;
  callbackMaxNs: bigint;
  callbackTotalNs: bigint;
  nowNs: bigint;
}

export class NativeShim {
  readonly path = SHIM_PATH;
  readonly callbackAddress: unknown;
  readonly open: () => number;
  readonly drain: (out: Buffer, cap: number, maxEvents: number, count: Uint32Array) => number | bigint;
  readonly arm: () => void;
  readonly preferProducers: () => number;
  private readonly statsFn: (out: BigUint64Array) => void;
  private readonly allocCopyFn: (src: Uint8Array, len: number) => number | bigint;
  private readonly freeFn: (address: bigint) => void;
  private readonly copyOutFn: (dst: Uint8Array, address: bigint, len: number) => void;

  constructor() {
    if (!fs.existsSync(SHIM_PATH)) {
      throw new Error(`native shim missing at ${SHIM_PATH}; run "npm install" (or "node scripts/build-native.js") with a C compiler present`);
    }
    const lib = koffi.load(SHIM_PATH);
    this.callbackAddress = lib.func('void *lkq_callback_address(void)')();
    this.open = lib.func('int lkq_open(void)');
    this.drain = lib.func('int64_t lkq_drain(uint8_t *out, size_t cap, uint32_t max_events, uint32_t *count)');
    this.arm = lib.func('void lkq_arm(void)');
    this.preferProducers = lib.func('int lkq_prefer_producers(void)');
    this.statsFn = lib.func('void lkq_stats(uint64_t *out)');
    this.allocCopyFn = lib.func('uint64_t lkq_alloc_copy(const uint8_t *src, size_t len)');
    this.freeFn = lib.func('void lkq_free(uint64_t address)');
    this.copyOutFn = lib.func('void lkq_copy_out(uint8_t *dst, uint64_t address, size_t len)');
  }

  stats(): QueueStats {
    const out = new BigUint64Array(6);
    this.statsFn(out);
    return { pushed: out[0]!, popped: out[1]!, allocFailed: out[2]!, callbackMaxNs: out[3]!, callbackTotalNs: out[4]!, nowNs: out[5]! };
  }

  /** Copies `bytes` into fresh native memory; the caller frees it with free(). */
  allocCopy(bytes: Uint8Array): bigint {
    const address = BigInt(this.allocCopyFn(bytes, bytes.length));
    if (address === 0n) throw new Error(`native allocation of ${bytes.length} bytes failed`);
    return address;
  }

  free(address: bigint): void {
    this.freeFn(address);
  }

  /** Copies `len` bytes of native memory at `address` into a new Buffer. */
  copyOut(address: bigint, len: number): Buffer {
    const out = Buffer.allocUnsafe(len);
    if (len > 0) this.copyOutFn(out, address, len);
    return out;
  }
}
