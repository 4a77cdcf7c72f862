// Who owns what: every handle the library handed to a session, and every async id a session is
// waiting on. One registry for the whole broker, so an event's owner is one map lookup.

// How long events about a dropped handle still reach the session that dropped it.
const RELEASED_MEMORY_MS = 5000;

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
  // Broker-chosen async ids live far above the library's own counter (which starts at 1).
  private nextBrokerAsyncId = 1n << 62n;

  own(owner: O, handle: bigint): void {
    this.handleOwners.set(handle, owner);
    let set = this.ownedBy.get(owner);
    if (set === undefined) this.ownedBy.set(owner, (set = new Set()));
    set.add(handle);
  }

  ownerOf(handle: bigint): O | undefined {
    return this.handleOwners.get(handle);
  }

  owns(owner: O, handle: bigint): boolean {
    return this.handleOwners.get(handle) === owner;
  }

  /** Forgets a handle (the caller drops it in the library). */
  release(handle: bigint): void {
    const owner = this.handleOwners.get(handle);
    if (owner === undefined) return;
    this.handleOwners.delete(handle);
    this.ownedBy.get(owner)?.delete(handle);
    const now = Date.now();
    this.released.set(handle, { owner, at: now });
    // Oldest first (insertion order): stop at the first one still recent.
    for (const [h, r] of this.released) {
      if (now - r.at < RELEASED_MEMORY_MS) break;
      this.released.delete(h);
    }
  }

  /** The session that dropped `handle` within the last few seconds, if it still exists. */
  formerOwner(handle: bigint): O | undefined {
    return this.released.get(handle)?.owner;
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

  /** Forgets everything of an owner; returns its handles for the caller to drop in the library. */
  forget(owner: O): bigint[] {
    const handles = [...(this.ownedBy.get(owner) ?? [])];
    for (const h of handles) this.handleOwners.delete(h);
    this.ownedBy.delete(owner);
    for (const id of this.asyncBy.get(owner) ?? []) this.asyncOwners.delete(id);
    for (const [h, r] of this.released) if (r.owner === owner) this.released.delete(h);
    this.asyncBy.delete(owner);
    return handles;
  }
}
