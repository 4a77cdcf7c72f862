// The worker's memory for one request, in native memory the broker owns. The worker sends each
// region its pointers refer to as Buffer{ptr, data}, or Buffer{ptr, lane} when the bytes are in its
// media lane; a pointer may point anywhere inside a region (a video plane inside its frame). Each
// inline region used is copied to native memory once, a lane region is lent as it lies in the
// lane's mapping; each pointer field is rewritten to the same offset there, and the copies are
// freed when the call returned.
import { create } from '@bufbuild/protobuf';
import { BufferSchema, type Buffer as WireBuffer, type LaneRef } from '../proto/gen/ffi_broker_pb.js';
import { refuse } from './errors.js';
import { selected, setFieldValue, walk, type SchemaField, type SchemaMessage } from './livekit_schema.js';
import { pointerField } from './pointer_fields.js';
import type { MediaLane } from './media_lane.js';
import type { NativeShim } from './native/shim.js';

interface Region {
  ptr: bigint;
  length: number;
  data: Uint8Array;
  lane: LaneRef | undefined;
  address?: bigint;
}

export class RequestMemory {
  private readonly regions: Region[];
  private readonly inOut: { ptr: bigint; address: bigint; size: number }[] = [];
  /** Memory this request may hand the library: the copies (`owned`, freed by release()) and the lane's slots. */
  private readonly allocations: { address: bigint; size: number; owned: boolean }[] = [];

  constructor(
    private readonly shim: NativeShim,
    buffers: readonly WireBuffer[],
    private readonly maxBytes: number,
    private readonly lane: MediaLane | undefined,
  ) {
    this.regions = buffers.map((b) => ({ ptr: b.ptr, length: b.lane === undefined ? b.data.length : Number(b.lane.length), data: b.data, lane: b.lane }));
  }

  /** Points `field` of `holder` at the broker's copy of the bytes the worker's pointer `ptr` names. */
  bind(holder: SchemaMessage, field: SchemaField, ptr: bigint): void {
    const typeName = holder.getType().typeName;
    const name = typeName.replace('livekit.proto.', '');
    const entry = pointerField(typeName, field.name)!; // request_kinds vouched for every pointer of this kind
    const need = entry.size(holder);
    if (!Number.isSafeInteger(need) || need < 0 || need > this.maxBytes) throw refuse.oversizedBuffer(name, field.name, need, this.maxBytes);
    const region = this.regions.find((r) => ptr >= r.ptr && ptr - r.ptr < BigInt(Math.max(r.length, 1)));
    if (region === undefined) {
      if (need > 0) throw refuse.missingBuffer(name, field.name, ptr);
      // Nothing to read, but the library still builds a slice from it, which must not be null.
      setFieldValue(holder, field, this.allocate(new Uint8Array(0)));
      return;
    }
    const offset = ptr - region.ptr;
    const available = region.length - Number(offset);
    if (available < need) throw refuse.shortBuffer(name, field.name, ptr, need, available);
    region.address ??= region.lane === undefined ? this.allocate(region.data) : this.lend(name, region);
    const address = region.address + offset;
    setFieldValue(holder, field, address);
    if (entry.request === 'in-out') this.inOut.push({ ptr, address, size: need });
  }

  /** What the library wrote into in-out memory, keyed by the worker's pointers. */
  written(): WireBuffer[] {
    return this.inOut.map((r) => create(BufferSchema, { ptr: r.ptr, data: this.shim.copyOut(r.address, r.size) }));
  }

  /**
   * The last line of defence before the library: walks `request` (the FfiRequest, as the executor
   * is about to encode it for livekit_ffi_request) on its own and checks that every pointer field,
   * with the bytes its message says it covers, lies inside memory this object allocated.
   * Independent of bind(), so a bug there (or anywhere between bind and the call) cannot hand the
   * library a worker's address. Returns what is wrong, or undefined when every pointer is ours.
   */
  foreignPointer(request: SchemaMessage): string | undefined {
    let problem: string | undefined;
    const chosen = selected(request);
    if (chosen === undefined) return undefined;
    walk(chosen.value, {
      pointer: (holder, field, ptr) => {
        if (problem !== undefined) return;
        const typeName = holder.getType().typeName;
        const entry = pointerField(typeName, field.name);
        const need = entry === undefined ? Number.NaN : entry.size(holder);
        const where = `${typeName.replace('livekit.proto.', '')}.${field.name} = 0x${ptr.toString(16)}`;
        if (!Number.isSafeInteger(need) || need < 0) problem = `${where} has no valid size`;
        else if (!this.allocations.some((a) => ptr >= a.address && ptr + BigInt(need) <= a.address + BigInt(a.size))) problem = `${where} (+${need} bytes) is outside the broker's memory for this request`;
      },
    });
    return problem;
  }

  release(): void {
    for (const { address, owned } of this.allocations) if (owned) this.shim.free(address);
    this.allocations.length = 0;
  }

  /** The lane's own memory for a Buffer{ptr, lane}: nothing is copied. */
  private lend(kind: string, region: Region): bigint {
    if (this.lane === undefined) throw refuse.noLane(kind);
    if (region.data.length > 0) throw refuse.laneAndData(kind, region.ptr);
    const address = this.lane.resolve(region.lane!, kind);
    this.allocations.push({ address, size: region.length, owned: false });
    return address;
  }

  private allocate(bytes: Uint8Array): bigint {
    const address = this.shim.allocCopy(bytes);
    this.allocations.push({ address, size: bytes.length, owned: true });
    return address;
  }
}
