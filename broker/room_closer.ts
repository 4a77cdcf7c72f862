// Disconnects the rooms of a session that ended before their handles are dropped. Dropping a room
// handle does not disconnect the room inside liblivekit_ffi: its participant would stay in the
// LiveKit room for as long as the broker runs. The broker sends the DisconnectRequest itself, and
// its DisconnectCallback comes here (this is the async id's owner in the registry); the session's
// handles are dropped once every room of it is closed, so the library's own close still finds the
// track handles it releases.
import type { Logger } from 'pino';
import { DisconnectRequest, ReadyForRoomEventRequest } from '@livekit/rtc-ffi-bindings/proto/room_pb.js';
import { FfiEvent, FfiRequest, FfiResponse } from './livekit_schema.js';
import type { EventReceiver } from './event_router.js';
import type { HandleRegistry } from './handle_registry.js';
import type { FfiLibrary } from './native/ffi_library.js';

// Past this, an ended session's handles are dropped without waiting for its rooms to close.
const DISCONNECT_WAIT_MS = 10_000;

interface Ending {
  /** Async ids of the DisconnectCallbacks still to come. */
  waiting: Set<bigint>;
  rooms: number;
  handles: bigint[];
  log: Logger;
  startedAt: number;
  timer?: NodeJS.Timeout;
}

export class RoomCloser implements EventReceiver {
  readonly id = 'broker:room-closer';
  // Its events (disconnect callbacks) carry no frames.
  readonly lane = undefined;
  private readonly endings = new Map<bigint, Ending>();

  constructor(
    private readonly library: FfiLibrary,
    private readonly registry: Pick<HandleRegistry<RoomCloser>, 'expectAsync'>,
    /** Libraries before ReadyForRoomEventRequest neither hold rooms for it nor know it. */
    private readonly awaitsReady: boolean,
  ) {}

  /** Disconnects `rooms`, then drops them and `handles` (at once when there is no room). */
  close(rooms: readonly bigint[], handles: readonly bigint[], log: Logger): void {
    const ending: Ending = { waiting: new Set(), rooms: rooms.length, handles: [...rooms, ...handles], log, startedAt: Date.now() };
    for (const room of rooms) {
      const asyncId = this.disconnect(room, log);
      if (asyncId === undefined) continue;
      ending.waiting.add(asyncId);
      this.endings.set(asyncId, ending);
    }
    if (ending.waiting.size === 0) return this.drop(ending);
    log.info({ rooms: rooms.map(String) }, 'disconnecting rooms no session owns any more');
    ending.timer = setTimeout(() => {
      log.warn({ rooms: ending.waiting.size, waitedMs: DISCONNECT_WAIT_MS }, 'rooms of an ended session did not confirm their disconnect; dropping its handles anyway');
      this.drop(ending);
    }, DISCONNECT_WAIT_MS);
    ending.timer.unref();
  }

  /** The DisconnectCallback's async id, or undefined when the library refused the request. */
  private disconnect(room: bigint, log: Logger): bigint | undefined {
    // A connect whose ReadyForRoomEventRequest never came holds the room's lock, which Disconnect
    // waits for (15 s, then the library tears the room down and reports a panic); this releases it,
    // and is a no-op for a room already released.
    if (this.awaitsReady) this.library.request(new FfiRequest({ message: { case: 'readyForRoomEvent', value: new ReadyForRoomEventRequest({ roomHandle: room }) } }).toBinary());
    const answer = this.library.request(new FfiRequest({ message: { case: 'disconnect', value: new DisconnectRequest({ roomHandle: room }) } }).toBinary());
    const response = answer === null ? undefined : FfiResponse.fromBinary(answer).message;
    if (response?.case !== 'disconnect' || response.value.asyncId === undefined) {
      log.warn({ room: String(room) }, 'liblivekit_ffi refused to disconnect a room of an ended session; its handle is dropped without it');
      return undefined;
    }
    this.registry.expectAsync(this, response.value.asyncId, response.value.asyncId);
    return response.value.asyncId;
  }

  enqueueEvent(ffiEvent: Uint8Array): void {
    const event = FfiEvent.fromBinary(ffiEvent).message;
    if (event.case !== 'disconnect' || event.value.asyncId === undefined) return;
    const ending = this.endings.get(event.value.asyncId);
    if (ending === undefined) return;
    this.endings.delete(event.value.asyncId);
    ending.waiting.delete(event.value.asyncId);
    if (ending.waiting.size === 0) this.drop(ending);
  }

  flushEvents(): void {}

  /** The library was disposed, which closed every room it still held: drops what still waits. */
  dropAll(): void {
    for (const ending of new Set(this.endings.values())) this.drop(ending);
  }

  private drop(ending: Ending): void {
    clearTimeout(ending.timer);
    for (const id of ending.waiting) this.endings.delete(id);
    ending.waiting.clear();
    for (const handle of ending.handles) this.library.dropHandle(handle);
    const figures = { droppedHandles: ending.handles.length, disconnectedRooms: ending.rooms, ms: Date.now() - ending.startedAt };
    ending.log.info(figures, ending.rooms === 0 ? 'handles dropped' : 'rooms disconnected, then their handles dropped');
  }
}
