// The worker's side of a session's media lane (Welcome.lane): the two regions the broker created,
// opened through the paths it gave. Node cannot map memory without native code, which a worker
// never loads, so bytes move with pread/pwrite on the region's fd: one kernel copy each way, in
// place of protobuf encoding, HTTP/2 framing and the socket (the Python client maps the regions).
//
// to_broker: this client places the media of a request there and frees it when the Response came.
// to_client: the broker's ring; read a slot, then store its `release` in the cursor.
import fs from 'node:fs';
import { create } from '@bufbuild/protobuf';
import { LaneRefSchema, type LaneRef, type LaneRegion, type MediaLane as WireLane } from '../proto/gen/ffi_broker_pb.js';

const CURSOR_OFFSET = 0;
const MAPPED_FLAG_OFFSET = 8;
/** Smaller buffers travel inline: a syscall costs more than their bytes in the message. */
export const LANE_MIN_BYTES = 512;

interface Placed {
  end: number;
  freed: boolean;
}

function openRegion(region: LaneRegion | undefined, name: string): number {
  if (region === undefined) throw new Error(`Welcome.lane has no ${name} region`);
  const fd = fs.openSync(region.path, 'r+');
  try {
    const size = fs.fstatSync(fd).size;
    if (BigInt(size) !== region.size) throw new Error(`${region.path} has ${size} bytes, Welcome.lane says ${region.size}`);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}

export class ClientLane {
  private readonly toBrokerFd: number;
  private readonly toClientFd: number;
  private readonly toBrokerSize: number;
  /** to_broker as a ring of what requests in flight hold: freed in any order, reused from the oldest. */
  private placedUpTo = 0;
  private freedUpTo = 0;
  private placed: Placed[] = [];
  private head = 0;
  private cursor = 0n;
  private readonly word = Buffer.alloc(8);
  private closed = false;
  /** Buffers that crossed in the lane: placed for the broker, read from it. */
  readonly counters = { placed: 0, read: 0 };

  /** Opens both regions; throws (the caller then sends media inline) when they cannot be opened. */
  constructor(readonly granted: WireLane) {
    this.toBrokerFd = openRegion(granted.toBroker, 'to_broker');
    try {
      this.toClientFd = openRegion(granted.toClient, 'to_client');
    } catch (err) {
      fs.closeSync(this.toBrokerFd);
      throw err;
    }
    this.toBrokerSize = Number(granted.toBroker!.size);
    this.word.writeBigUInt64LE(1n);
    fs.writeSync(this.toClientFd, this.word, 0, 8, MAPPED_FLAG_OFFSET);
  }

  /** Writes `data` into to_broker; the reference to send instead of the bytes, or undefined when there is no room. */
  place(data: Uint8Array): { ref: LaneRef; slot: Placed } | undefined {
    if (this.closed) return undefined;
    this.reclaim();
    const at = this.placedUpTo % this.toBrokerSize;
    const skip = at + data.length > this.toBrokerSize ? this.toBrokerSize - at : 0;
    if (this.placedUpTo + skip + data.length - this.freedUpTo > this.toBrokerSize) return undefined;
    const offset = skip > 0 ? 0 : at;
    fs.writeSync(this.toBrokerFd, data, 0, data.length, offset);
    this.placedUpTo += skip + data.length;
    const slot = { end: this.placedUpTo, freed: false };
    this.placed.push(slot);
    this.counters.placed++;
    return { ref: create(LaneRefSchema, { region: this.granted.toBroker!.id, offset: BigInt(offset), length: BigInt(data.length) }), slot };
  }

  /** The request whose media `slot` holds was answered (or failed): the broker is done with it. */
  free(slot: Placed): void {
    slot.freed = true;
  }

  /** The bytes of a to_client reference. */
  read(ref: LaneRef): Uint8Array {
    if (ref.region !== this.granted.toClient!.id) throw new Error(`an event refers to lane region ${ref.region}, not this session's to_client (${this.granted.toClient!.id})`);
    const out = Buffer.allocUnsafe(Number(ref.length));
    const got = fs.readSync(this.toClientFd, out, 0, out.length, Number(ref.offset));
    if (got !== out.length) throw new Error(`lane region ${ref.region}: read ${got} of ${out.length} bytes at ${ref.offset}`);
    this.counters.read++;
    return out;
  }

  /** Everything up to `release` was read: the broker may reuse it. One store per batch of events. */
  release(release: bigint): void {
    if (this.closed || release <= this.cursor) return;
    this.cursor = release;
    this.word.writeBigUInt64LE(release);
    fs.writeSync(this.toClientFd, this.word, 0, 8, CURSOR_OFFSET);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.toBrokerFd);
    fs.closeSync(this.toClientFd);
  }

  private reclaim(): void {
    while (this.head < this.placed.length && this.placed[this.head]!.freed) this.freedUpTo = this.placed[this.head++]!.end;
    if (this.head > 1024 && this.head * 2 > this.placed.length) {
      this.placed = this.placed.slice(this.head);
      this.head = 0;
    }
    if (this.head === this.placed.length) {
      // Nothing in flight: start again at the region's beginning.
      this.placedUpTo = 0;
      this.freedUpTo = 0;
      this.placed = [];
      this.head = 0;
    }
  }
}
