// Who owns what: every handle the library handed to a session, and every async id a session is
// waiting on. One registry for the whole broker, so an event's owner is one map lookup.

// How long events about a dropped handle still reach the session that dropped it.
const RELEASED_MEMORY_MS = 5000;
export const OWNED_ROOM = 'livekit.proto.OwnedRoom';

export interface Owner {
  readonly id: string;
}

interface PendingAsync<O> {
  owner: O;
  /** The id the worker chose (request_async_id) when the broker replaced it; else the same id. */
  clientId: bigint;
}

export class HandleRegistry<O extends Owner> {
  private readonly handleOwners = new Map<bigint, O>();
  private readonly ownedBy = new Map<O, Set<bigint>>();
  private readonly asyncOwners = new Map<bigint, PendingAsync<O>>();
  // Handles dropped moments ago, by whom: the library's last events about them (a stream's EOS
  // comes after its handle was dropped) still belong to that session.
  private readonly released = new Map<bigint, { owner: O; at: number }>();
  private readonly asyncBy = new Map<O, Set<bigint>>();
  // Handles the library freed whose events go on until a last one (an incremental read's reader).
  private readonly streaming = new Map<bigint, O>();
  // Owned room handles: a session that ends has its rooms disconnected, not only dropped.
  private readonly rooms = new Set<bigint>();
  // Broker-chosen async ids live far above the library's own counter (which starts at 1).
  private nextBrokerAsyncId = 1n << 62n;

  /** `ownedType`: the Owned* message that handed it out (rooms are remembered as such). */
  own(owner: O, handle: bigint, ownedType?: string): void {
    this.handleOwners.set(handle, owner);
    if (ownedType === OWNED_ROOM) this.rooms.add(handle);
    let set = this.ownedBy.get(owner);
    if (set === undefined) this.ownedBy.set(owner, (set = new Set()));
    set.add(handle);
  }

  owns(owner: O, handle: bigint): boolean {
    return this.handleOwners.get(handle) === owner;
  }

  /** Forgets a handle (the caller drops it in the library). */
  release(handle: bigint): void {
    const owner = this.disown(handle);
    if (owner !== undefined) this.remember(handle, owner);
  }

  /**
   * Forgets a handle the library freed by itself (handles_freed_by_library.ts): it is no longer
   * the session's, and never dropped. With `untilLastEvent` its events keep reaching the session
   * until lastEvent(handle).
   */
  consume(handle: bigint, untilLastEvent: boolean): void {
    const owner = this.disown(handle);
    if (owner === undefined) return;
    if (untilLastEvent) this.streaming.set(handle, owner);
    else this.remember(handle, owner);
  }

  /** The last event naming a consumed handle was routed. */
  lastEvent(handle: bigint): void {
    this.streaming.delete(handle);
  }

  isOwned(handle: bigint): boolean {
    return this.handleOwners.has(handle);
  }

  /** Who gets an event naming `handle`: its owner, or the session it was freed or dropped for. */
  eventOwner(handle: bigint): O | undefined {
    return this.handleOwners.get(handle) ?? this.streaming.get(handle) ?? this.released.get(handle)?.owner;
  }

  private disown(handle: bigint): O | undefined {
    const owner = this.handleOwners.get(handle);
    if (owner === undefined) return undefined;
    this.handleOwners.delete(handle);
    this.ownedBy.get(owner)?.delete(handle);
    this.rooms.delete(handle);
    return owner;
  }

  private remember(handle: bigint, owner: O): void {
    const now = Date.now();
    this.released.set(handle, { owner, at: now });
    // Oldest first (insertion order): stop at the first one still recent.
    for (const [h, r] of this.released) {
      if (now - r.at < RELEASED_MEMORY_MS) break;
      this.released.delete(h);
    }
  }

  handlesOf(owner: O): ReadonlySet<bigint> {
    return this.ownedBy.get(owner) ?? new Set();
  }

  get handleCount(): number {
    return this.handleOwners.size;
  }

  /** A broker-unique async id standing in for one the worker chose. */
  substituteAsyncId(): bigint {
    return this.nextBrokerAsyncId++;
  }

  isAsyncPending(asyncId: bigint): boolean {
    return this.asyncOwners.has(asyncId);
  }

  expectAsync(owner: O, asyncId: bigint, clientId: bigint): void {
    this.asyncOwners.set(asyncId, { owner, clientId });
    let set = this.asyncBy.get(owner);
    if (set === undefined) this.asyncBy.set(owner, (set = new Set()));
    set.add(asyncId);
  }

  /** The pending async id's owner, or undefined; `settle` forgets it (its one callback came). */
  asyncOwner(asyncId: bigint, settle: boolean): PendingAsync<O> | undefined {
    const pending = this.asyncOwners.get(asyncId);
    if (pending !== undefined && settle) {
      this.asyncOwners.delete(asyncId);
      this.asyncBy.get(pending.owner)?.delete(asyncId);
    }
    return pending;
  }

  /**
   * Forgets everything of an owner; returns its handles for the caller to drop in the library,
   * its rooms apart (to be disconnected first).
   */
  forget(owner: O): { rooms: bigint[]; others: bigint[] } {
    const rooms: bigint[] = [];
    const others: bigint[] = [];
    for (const h of this.ownedBy.get(owner) ?? []) {
      this.handleOwners.delete(h);
      if (this.rooms.delete(h)) rooms.push(h);
      else others.push(h);
    }
    this.ownedBy.delete(owner);
    for (const id of this.asyncBy.get(owner) ?? []) this.asyncOwners.delete(id);
    for (const [h, r] of this.released) if (r.owner === owner) this.released.delete(h);
    for (const [h, o] of this.streaming) if (o === owner) this.streaming.delete(h);
    this.asyncBy.delete(owner);
    return { rooms, others };
  }
}
