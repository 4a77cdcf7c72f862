// koffi bindings of media_lane.c: sealed shared-memory regions, and copies between native addresses.
import fs from 'node:fs';
import path from 'node:path';
import koffi from 'koffi';
import { nativeBuildDir } from '../paths.js';

const LANE_PATH = path.join(nativeBuildDir, 'liblkb_media_lane.so');

export interface MappedRegion {
  fd: number;
  address: bigint;
  size: number;
}

export class LaneMemory {
  private readonly createFn: (size: number, address: BigUint64Array) => number;
  private readonly destroyFn: (fd: number, address: bigint, size: number) => void;
  private readonly copyFn: (dst: bigint, src: bigint, len: number) => void;
  private readonly loadFn: (address: bigint) => number | bigint;
  private readonly out = new BigUint64Array(1);

  constructor() {
    if (!fs.existsSync(LANE_PATH)) {
      throw new Error(`native media lane missing at ${LANE_PATH}; run "npm install" (or "node scripts/build-native.js") with a C compiler present`);
    }
    const lib = koffi.load(LANE_PATH);
    this.createFn = lib.func('int lml_create(uint64_t size, _Out_ uint64_t *address)');
    this.destroyFn = lib.func('void lml_destroy(int fd, uint64_t address, uint64_t size)');
    this.copyFn = lib.func('void lml_copy(uint64_t dst, uint64_t src, size_t len)');
    this.loadFn = lib.func('uint64_t lml_load_u64(uint64_t address)');
  }

  /** A sealed, mapped region of `size` zero bytes; throws with the errno text when the kernel refuses. */
  create(size: number): MappedRegion {
    const fd = this.createFn(size, this.out);
    if (fd < 0) throw new Error(`creating a ${size}-byte shared memory region failed (errno ${-fd})`);
    return { fd, address: this.out[0]!, size };
  }

  destroy(region: MappedRegion): void {
    this.destroyFn(region.fd, region.address, region.size);
  }

  copy(dst: bigint, src: bigint, len: number): void {
    if (len > 0) this.copyFn(dst, src, len);
  }

  loadU64(address: bigint): bigint {
    return BigInt(this.loadFn(address));
  }
}
