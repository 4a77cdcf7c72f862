// The worker's memory for one request, in native memory the broker owns. The worker sends each
// region its pointers refer to as Buffer{ptr, data}; a pointer may point anywhere inside a region
// (a video plane inside its frame). Each region used is copied to native memory once, each pointer
// field rewritten to the same offset in the copy, and the copies are freed when the call returned.
import { create } from '@bufbuild/protobuf';
import { BufferSchema, type Buffer as WireBuffer } from '../proto/gen/ffi_broker_pb.js';
import { refuse } from './errors.js';
import { setFieldValue, type SchemaField, type SchemaMessage } from './livekit_schema.js';
import { pointerField } from './pointer_fields.js';
import type { NativeShim } from './native/shim.js';

interface Region {
  ptr: bigint;
  data: Uint8Array;
  address?: bigint;
}

export class RequestMemory {
  private readonly regions: Region[];
  private readonly inOut: { ptr: bigint; address: bigint; size: number }[] = [];
  private readonly allocations: bigint[] = [];

  constructor(
    private readonly shim: NativeShim,
    buffers: readonly WireBuffer[],
    private readonly maxBytes: number,
  ) {
    this.regions = buffers.map((b) => ({ ptr: b.ptr, data: b.data }));
  }

  /** Points `field` of `holder` at the broker's copy of the bytes the worker's pointer `ptr` names. */
  bind(holder: SchemaMessage, field: SchemaField, ptr: bigint): void {
    const typeName = holder.getType().typeName;
    const name = typeName.replace('livekit.proto.', '');
    const entry = pointerField(typeName, field.name)!; // request_kinds vouched for every pointer of this kind
    const need = entry.size(holder);
    if (!Number.isSafeInteger(need) || need < 0 || need > this.maxBytes) throw refuse.oversizedBuffer(name, field.name, need, this.maxBytes);
    const region = this.regions.find((r) => ptr >= r.ptr && ptr - r.ptr < BigInt(Math.max(r.data.length, 1)));
    if (region === undefined) {
      if (need > 0) throw refuse.missingBuffer(name, field.name, ptr);
      // Nothing to read, but the library still builds a slice from it, which must not be null.
      setFieldValue(holder, field, this.allocate(new Uint8Array(0)));
      return;
    }
    const offset = ptr - region.ptr;
    const available = region.data.length - Number(offset);
    if (available < need) throw refuse.shortBuffer(name, field.name, ptr, need, available);
    region.address ??= this.allocate(region.data);
    const address = region.address + offset;
    setFieldValue(holder, field, address);
    if (entry.request === 'in-out') this.inOut.push({ ptr, address, size: need });
  }

  /** What the library wrote into in-out memory, keyed by the worker's pointers. */
  written(): WireBuffer[] {
    return this.inOut.map((r) => create(BufferSchema, { ptr: r.ptr, data: this.shim.copyOut(r.address, r.size) }));
  }

  release(): void {
    for (const address of this.allocations) this.shim.free(address);
    this.allocations.length = 0;
  }

  private allocate(bytes: Uint8Array): bigint {
    const address = this.shim.allocCopy(bytes);
    this.allocations.push(address);
    return address;
  }
}
