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
    const buffers: WireBuffer[] = [];
    const drops: bigint[] = [];
    walk(value, {
      pointer: (holder, field, address) => {
        const typeName = holder.getType().typeName;
        const entry = pointerField(typeName, field.name);
        if (entry?.output !== true) {
          this.warnOnce(`${typeName}.${field.name}`);
          return;
        }
        if (owner === undefined || address === 0n) return;
        buffers.push(create(BufferSchema, { ptr: address, data: this.shim.copyOut(address, entry.size(holder)) }));
      },
      ownedHandle: (id, container) => {
        if (owner === undefined || (container !== undefined && MEMORY_HANDLE_TYPES.has(container.getType().typeName))) drops.push(id);
        else this.registry.own(owner, id);
      },
    });
    // After the walk: the copies above read memory these handles keep alive.
    for (const id of drops) this.library.dropHandle(id);
    return buffers;
  }

  private warnOnce(key: string): void {
    if (this.warnedPointers.has(key)) return;
    this.warnedPointers.add(key);
    this.log.warn({ pointerField: key }, 'a message from the library carries a pointer field the broker does not copy; the worker receives the message without its memory');
  }
}
