// What the library hands out in a response or event, made safe to forward: every pointer field's
// bytes copied into a Buffer keyed by the pointer value, memory-only handles (frame buffers)
// dropped once copied, every other handle owned by the receiving session.
import { create } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { BufferSchema, type Buffer as WireBuffer } from '../proto/gen/ffi_broker_pb.js';
import { walk, type SchemaMessage } from './livekit_schema.js';
import { MEMORY_HANDLE_TYPES, pointerField } from './pointer_fields.js';
import type { HandleRegistry, Owner } from './handle_registry.js';
import type { FfiLibrary } from './native/ffi_library.js';
import type { NativeShim } from './native/shim.js';

export class OutputMemory<O extends Owner> {
  private readonly warnedPointers = new Set<string>();

  constructor(
    private readonly library: FfiLibrary,
    private readonly shim: NativeShim,
    private readonly registry: HandleRegistry<O>,
    private readonly log: Logger,
  ) {}

  /**
   * Walks `value` (the selected oneof of a response or event). `owner` receives its handles;
   * without an owner (an event nobody owns) every handle is dropped instead. Returns the buffers.
   */
  take(value: SchemaMessage, owner: O | undefined): WireBuffer[] {
    const ranges: { ptr: bigint; end: bigint }[] = [];
    const drops: bigint[] = [];
    walk(value, {
      pointer: (holder, field, address) => {
        const typeName = holder.getType().typeName;
        const entry = pointerField(typeName, field.name);
        if (entry?.output !== 'copy-out') {
          this.warnOnce(`${typeName}.${field.name}`);
          return;
        }
        const size = entry.size(holder);
        if (owner !== undefined && address !== 0n && size > 0) ranges.push({ ptr: address, end: address + BigInt(size) });
      },
      ownedHandle: (id, container) => {
        if (owner === undefined || (container !== undefined && MEMORY_HANDLE_TYPES.has(container.getType().typeName))) drops.push(id);
        else this.registry.own(owner, id);
      },
    });
    // One Buffer per contiguous region: a video frame's planes point inside the frame's Buffer.
    ranges.sort((a, b) => (a.ptr < b.ptr ? -1 : a.ptr > b.ptr ? 1 : 0));
    const buffers: WireBuffer[] = [];
    let current: { ptr: bigint; end: bigint } | undefined;
    const flush = () => current && buffers.push(create(BufferSchema, { ptr: current.ptr, data: this.shim.copyOut(current.ptr, Number(current.end - current.ptr)) }));
    for (const range of ranges) {
      if (current !== undefined && range.ptr <= current.end) {
        if (range.end > current.end) current.end = range.end;
        continue;
      }
      flush();
      current = { ...range };
    }
    flush();
    // After copying: these handles keep the memory just read alive.
    for (const id of drops) this.library.dropHandle(id);
    return buffers;
  }

  private warnOnce(key: string): void {
    if (this.warnedPointers.has(key)) return;
    this.warnedPointers.add(key);
    this.log.warn({ pointerField: key }, 'a message from the library carries a pointer field the broker does not copy; the worker receives the message without its memory');
  }
}
