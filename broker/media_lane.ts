// One session's media lane: two sealed shared-memory regions (media_lane.c) that the session's
// worker maps too. to_broker holds the media of the worker's requests: the broker only resolves a
// reference to an address inside it, checked against the region's bounds, and lends that address to
// the library for the call (no copy at all). to_client is a ring the broker writes received
// frames into: one copy from the library's frame memory, none in JavaScript, none on the socket.
//
// The worker can write any byte of either region at any time, its to_client cursor included. That
// can only garble its own media: the broker reads no address or size out of a region, and clamps
// the cursor to what it has written.
import { create } from '@bufbuild/protobuf';
import { LaneRefSchema, MediaLaneSchema, type LaneRef, type LaneRequest, type MediaLane as WireLane } from '../proto/gen/ffi_broker_pb.js';
import { refuse } from './errors.js';
import type { LaneMemory, MappedRegion } from './native/lane_memory.js';

export interface LaneLimits {
  /** Whether Hello.lane is granted at all (--media-lane). */
  enabled: boolean;
  /** The largest region a client may ask for (--media-lane-max-size). */
  maxRegionBytes: number;
}

/** What a region gets when the client asks for 0: about 10 s of one 48 kHz mono stream of 10 ms frames. */
export const DEFAULT_REGION_BYTES = 1024 * 1024;
const MIN_REGION_BYTES = 64 * 1024;
/** to_client: the client's cursor (bytes 0–7) and its "mapped" flag (8–15), then the ring. */
const RING_HEADER_BYTES = 64;
const MAPPED_FLAG_OFFSET = 8n;

// Region ids are unique in the broker, so a reference to another session's region is told apart
// from one to none.
let lastRegionId = 0;

interface Region extends MappedRegion {
  id: number;
}

interface Slot {
  /** The ring position just past the slot (its LaneRef.release). */
  end: number;
  /** The event it was written for was dropped: the client will never release it. */
  dropped: boolean;
}

export class MediaLane {
  private readonly toBroker: Region;
  private readonly toClient: Region;
  private readonly capacity: number;
  /** Ring positions grow without wrapping; position p is at byte RING_HEADER_BYTES + p % capacity. */
  private produced = 0;
  private released = 0;
  private slots: Slot[] = [];
  private head = 0;
  private closed = false;
  // Until the client says it mapped to_client, a frame written there would be lost to it.
  private clientMapped = false;

  constructor(
    private readonly memory: LaneMemory,
    asked: LaneRequest,
    limits: LaneLimits,
  ) {
    const size = (bytes: bigint) => Math.min(limits.maxRegionBytes, Math.max(MIN_REGION_BYTES, bytes === 0n ? DEFAULT_REGION_BYTES : Number(bytes)));
    this.toBroker = { ...memory.create(size(asked.toBrokerBytes)), id: ++lastRegionId };
    try {
      this.toClient = { ...memory.create(size(asked.toClientBytes)), id: ++lastRegionId };
    } catch (err) {
      memory.destroy(this.toBroker);
      throw err;
    }
    this.capacity = this.toClient.size - RING_HEADER_BYTES;
  }

  /** Welcome.lane: the regions as the worker opens them (this process's fds under /proc). */
  describe(): WireLane {
    const region = (r: Region) => ({ $typeName: 'livekit.ffi_broker.v1.LaneRegion' as const, id: r.id, path: `/proc/${process.pid}/fd/${r.fd}`, size: BigInt(r.size) });
    return create(MediaLaneSchema, { toBroker: region(this.toBroker), toClient: region(this.toClient) });
  }

  /** The broker's address of the bytes a request's reference names; refuses a reference that is not inside this session's to_broker region. */
  resolve(ref: LaneRef, kind: string): bigint {
    if (ref.region !== this.toBroker.id) throw refuse.laneRegionNotOwned(kind, ref.region, this.toBroker.id);
    if (ref.offset + ref.length > BigInt(this.toBroker.size)) throw refuse.laneOutOfBounds(kind, ref.offset, ref.length, this.toBroker.size);
    return this.toBroker.address + ref.offset;
  }

  /** Copies `length` bytes at `source` into the ring; undefined when it has no room (send them inline). */
  write(source: bigint, length: number): LaneRef | undefined {
    if (this.closed || length === 0 || length > this.capacity) return undefined;
    if (!this.clientMapped) {
      if (this.memory.loadU64(this.toClient.address + MAPPED_FLAG_OFFSET) !== 1n) return undefined;
      this.clientMapped = true;
    }
    this.reclaim();
    const at = this.produced % this.capacity;
    // A slot never wraps: when it does not fit before the ring's end it starts at its beginning.
    const skip = at + length > this.capacity ? this.capacity - at : 0;
    if (this.produced + skip + length - this.released > this.capacity) return undefined;
    const offset = RING_HEADER_BYTES + (skip > 0 ? 0 : at);
    this.memory.copy(this.toClient.address + BigInt(offset), source, length);
    this.produced += skip + length;
    this.slots.push({ end: this.produced, dropped: false });
    return create(LaneRefSchema, { region: this.toClient.id, offset: BigInt(offset), length: BigInt(length), release: BigInt(this.produced) });
  }

  /** The event holding `ref` was dropped before the client saw it: its slot is free once it is the oldest. */
  forget(ref: LaneRef): void {
    const end = Number(ref.release);
    for (let i = this.head; i < this.slots.length; i++) {
      if (this.slots[i]!.end !== end) continue;
      this.slots[i]!.dropped = true;
      return;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.memory.destroy(this.toBroker);
    this.memory.destroy(this.toClient);
  }

  /** Moves `released` up to the client's cursor (clamped to what was written), and past dropped slots. */
  private reclaim(): void {
    const cursor = this.memory.loadU64(this.toClient.address);
    const upTo = cursor > BigInt(this.produced) ? this.produced : Number(cursor);
    if (upTo > this.released) this.released = upTo;
    while (this.head < this.slots.length) {
      const slot = this.slots[this.head]!;
      if (slot.end > this.released && !slot.dropped) break;
      if (slot.end > this.released) this.released = slot.end;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.slots.length) {
      this.slots = this.slots.slice(this.head);
      this.head = 0;
    }
  }
}
