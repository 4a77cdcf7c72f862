// liblivekit_ffi loaded with koffi: the four functions of its C ABI, with the callback set to our
// shim's native queue (see callback_queue.c for why the callback is not JavaScript).
import fs from 'node:fs';
import path from 'node:path';
import koffi from 'koffi';
import type { NativeShim } from './shim.js';

const PLATFORM_PACKAGE = '@livekit/rtc-ffi-bindings-linux-x64-gnu';
const PLATFORM_BINARY = 'rtc-node.linux-x64-gnu.node';

export interface LibraryLocation {
  path: string;
  version: string;
}

/** The embedded library of the pinned npm package, unless a path is given. */
export function locateLibrary(override: string | undefined): LibraryLocation {
  if (override !== undefined && override !== '') {
    const resolved = path.resolve(override);
    if (!fs.existsSync(resolved)) throw new Error(`--ffi-lib ${override}: no such file; give the path of liblivekit_ffi (a .so or the npm .node binary)`);
    return { path: resolved, version: versionBeside(resolved) };
  }
  const manifest = require.resolve(`${PLATFORM_PACKAGE}/package.json`);
  return { path: path.join(path.dirname(manifest), PLATFORM_BINARY), version: JSON.parse(fs.readFileSync(manifest, 'utf8')).version };
}

// A library from an npm platform package carries its version in the package.json beside it; any
// other (an SDK wheel's liblivekit_ffi.so) only in the text of the record it logs at start.
function versionBeside(file: string): string {
  const manifest = path.join(path.dirname(file), 'package.json');
  if (fs.existsSync(manifest)) {
    const pkg = JSON.parse(fs.readFileSync(manifest, 'utf8'));
    if (typeof pkg.name === 'string' && pkg.name.startsWith('@livekit/rtc-ffi-bindings')) return String(pkg.version);
  }
  return versionInBinary(file) ?? 'unknown';
}

// rustc folds env!("CARGO_PKG_VERSION") into the literal of livekit_ffi_initialize's log line.
const VERSION_MARK = Buffer.from('initializing ffi server v');
const CHUNK_BYTES = 4 << 20;

function versionInBinary(file: string): string | undefined {
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(CHUNK_BYTES + 64);
    let carried = 0;
    for (;;) {
      const read = fs.readSync(fd, chunk, carried, CHUNK_BYTES, null);
      const filled = carried + read;
      const at = chunk.subarray(0, filled).indexOf(VERSION_MARK);
      if (at >= 0 && (at + VERSION_MARK.length + 32 <= filled || read === 0)) {
        return /^\d+\.\d+\.\d+/.exec(chunk.toString('latin1', at + VERSION_MARK.length, at + VERSION_MARK.length + 32))?.[0];
      }
      if (read === 0) return undefined;
      // Keep the tail, so that a mark cut by the chunk's end is found in the next round.
      carried = Math.min(64, filled);
      chunk.copy(chunk, 0, filled - carried, filled);
    }
  } finally {
    fs.closeSync(fd);
  }
}

export class FfiLibrary {
  private readonly requestFn: (data: Uint8Array, len: number, resPtr: BigUint64Array, resLen: BigUint64Array) => number | bigint;
  private readonly dropFn: (handle: bigint) => boolean;
  private readonly disposeFn: () => void;
  private readonly resPtr = new BigUint64Array(1);
  private readonly resLen = new BigUint64Array(1);
  private disposed = false;

  constructor(
    readonly location: LibraryLocation,
    private readonly shim: NativeShim,
    /** The SDK name and version the library gives livekit-server for every room (--sdk-name, --sdk-version). */
    sdk: { name: string; version: string },
  ) {
    const lib = koffi.load(location.path);
    const initialize = lib.func('void livekit_ffi_initialize(void *cb, bool capture_logs, const char *sdk, const char *sdk_version)');
    this.requestFn = lib.func('uint64_t livekit_ffi_request(const uint8_t *data, size_t len, uint64_t *res_ptr, uint64_t *res_len)');
    this.dropFn = lib.func('bool livekit_ffi_drop_handle(uint64_t handle)');
    this.disposeFn = lib.func('void livekit_ffi_dispose(void)');
    initialize(shim.callbackAddress, true, sdk.name, sdk.version);
  }

  /** Sends one encoded FfiRequest; returns the encoded FfiResponse, or null when the library refused it. */
  request(bytes: Uint8Array): Buffer | null {
    const handle = BigInt(this.requestFn(bytes, bytes.length, this.resPtr, this.resLen));
    if (handle === 0n) return null;
    const response = this.shim.copyOut(this.resPtr[0]!, Number(this.resLen[0]!));
    this.dropFn(handle);
    return response;
  }

  dropHandle(handle: bigint): boolean {
    return this.dropFn(handle);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.disposeFn();
  }
}
