// What the library hands out in a response or event, made safe to forward: every pointer field's
// bytes copied into a Buffer keyed by the pointer value (into the session's media lane when it is
// given one and the lane has room, else inline), memory-only handles (frame buffers) dropped once
// copied, every other handle owned by the receiving session.
import { create } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { BufferSchema, type Buffer as WireBuffer } from '../proto/gen/ffi_broker_pb.js';
import { walk, type SchemaMessage } from './livekit_schema.js';
import { MEMORY_HANDLE_TYPES, pointerField } from './pointer_fields.js';
import { OWNED_ROOM, type HandleRegistry, type Owner } from './handle_registry.js';
import type { MediaLane } from './media_lane.js';
import type { FfiLibrary } from './native/ffi_library.js';
import type { NativeShim } from './native/shim.js';

export class OutputMemory<O extends Owner> {
  private readonly warnedPointers = new Set<string>();

  constructor(
    private readonly library: FfiLibrary,
    private readonly shim: NativeShim,
    private readonly registry: HandleRegistry<O>,
    private readonly log: Logger,
    /** Takes rooms nobody owns (disconnects, then drops them). */
    private readonly orphanRooms: (rooms: bigint[]) => void,
  ) {}

  /**
   * Walks `value` (the selected oneof of a response or event). `owner` receives its handles;
   * without an owner (an event nobody owns) every handle is dropped instead, and a room is handed
   * to `orphanRooms`. Returns the buffers. `lane`: the owner's media lane, for a frame's bytes.
   */
  take(value: SchemaMessage, owner: O | undefined, lane?: MediaLane): WireBuffer[] {
    const ranges: { ptr: bigint; end: bigint }[] = [];
    const drops: bigint[] = [];
    const orphanRooms: bigint[] = [];
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
        const ownedType = container?.getType().typeName;
        if (owner === undefined && ownedType === OWNED_ROOM) orphanRooms.push(id);
        else if (owner === undefined || (ownedType !== undefined && MEMORY_HANDLE_TYPES.has(ownedType))) drops.push(id);
        else this.registry.own(owner, id, ownedType);
      },
    });
    // One Buffer per contiguous region: a video frame's planes point inside the frame's Buffer.
    ranges.sort((a, b) => (a.ptr < b.ptr ? -1 : a.ptr > b.ptr ? 1 : 0));
    const buffers: WireBuffer[] = [];
    let current: { ptr: bigint; end: bigint } | undefined;
    const flush = () => {
      if (current === undefined) return;
      const length = Number(current.end - current.ptr);
      const ref = lane?.write(current.ptr, length);
      buffers.push(create(BufferSchema, ref === undefined ? { ptr: current.ptr, data: this.shim.copyOut(current.ptr, length) } : { ptr: current.ptr, lane: ref }));
    };
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
    // A connect that completed after its session ended: the room is connected in the library.
    if (orphanRooms.length > 0) this.orphanRooms(orphanRooms);
    return buffers;
  }

  private warnOnce(key: string): void {
    if (this.warnedPointers.has(key)) return;
    this.warnedPointers.add(key);
    this.log.warn({ pointerField: key }, 'a message from the library carries a pointer field the broker does not copy; the worker receives the message without its memory');
  }
}
