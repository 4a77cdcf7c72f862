// The largest block this host's kernel lets one allocation reserve. Some requests make the library
// allocate up front from a worker's value (a stream's frame queue, an audio source's sample queue);
// an allocation the kernel refuses is an abort (Rust's handle_alloc_error, C++'s bad_alloc), one it
// grants is fine, since the memory is only reserved (measured: test/abort_guard.test.ts). So the
// limit is the kernel's, read when asked: it follows vm.overcommit_memory (Documentation/mm/overcommit-accounting).
import fs from 'node:fs';

function meminfoBytes(text: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** Bytes one allocation may reserve now (Infinity when the kernel grants any size). */
export function largestAllocation(): number {
  const mode = fs.readFileSync('/proc/sys/vm/overcommit_memory', 'utf8').trim();
  if (mode === '1') return Number.POSITIVE_INFINITY; // "always overcommit"
  const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
  // Mode 2 (strict): what is left of the commit limit, for the whole host.
  if (mode === '2') return meminfoBytes(meminfo, 'CommitLimit') - meminfoBytes(meminfo, 'Committed_AS');
  // Mode 0 (heuristic): one mapping fails only when it is larger than RAM and swap together (measured:
  // a video stream queue failed from 71,072 bytes past MemTotal, on a host without swap).
  return meminfoBytes(meminfo, 'MemTotal') + meminfoBytes(meminfo, 'SwapTotal');
}

/** Room for what the allocator adds to a block (its header, rounding up to a page). */
const ALLOCATION_SLACK = 4096;

/** Why an allocation of `bytes`, made up front from a worker's value, would fail on this host. */
export function allocationProblem(what: string, bytes: number): string | undefined {
  const limit = largestAllocation();
  return bytes + ALLOCATION_SLACK > limit ? `${what} would reserve ${bytes} bytes, more than this host's kernel grants one allocation (${limit} bytes)` : undefined;
}
