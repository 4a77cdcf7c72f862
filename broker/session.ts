// One worker's Session: its gRPC stream (while connected), its event sequence numbers and its
// outbound queue. Everything the session is sent goes through the queue, in order; the queue holds
// what the transport has not taken yet, so a worker that stops reading costs only its own memory:
// past --session-buffer the oldest media frames are dropped (and reported with EventsDropped), and
// if what cannot be dropped passes the hard cap the session fails. While its stream is broken the
// session keeps queueing, within the same limits, until it is resumed or released.
import { randomBytes, randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  EventSchema,
  NoticeSchema,
  ServerMessageSchema,
  WelcomeSchema,
  type Buffer as WireBuffer,
  type ClientMessage,
  type Event as WireEvent,
  type Hello,
  type MediaLane as WireLane,
  type Notice,
  type Response,
  type ServerMessage,
  type Welcome,
} from '../proto/gen/ffi_broker_pb.js';
import type { EventMeta, EventReceiver } from './event_router.js';
import type { Metrics } from './metrics.js';
import { eventWithOldParticipantInfo } from './participant_info_v1.js';
import type { MediaLane } from './media_lane.js';
import type { BridgeName } from './sdk_bridges.js';

export type SessionCall = ServerDuplexStream<ClientMessage, ServerMessage>;

export interface SessionLimits {
  /** Undelivered bytes past which media frames are dropped, oldest first. */
  bufferBytes: number;
  /** Undelivered bytes of events that may not be dropped past which the session fails. */
  hardCapBytes: number;
}

// Bytes handed to the transport and not yet taken by it; beyond this the queue holds the rest, so
// that drops can still choose what to drop.
const IN_FLIGHT_BYTES = 512 * 1024;
// Written events kept for a resume: only those a broken stream may not have delivered, i.e. at most
// what was in flight plus the socket's buffers. Keeping the whole session buffer instead cost every
// streaming session 16 MiB at rest (the soak's 50 sessions: 800 MiB).
const REPLAY_BYTES = 2 * 1024 * 1024;
const MAX_EVENTS_PER_BATCH = 512;
const ENVELOPE_BYTES = 24;

// What a Buffer holds for the session: its bytes in the lane count too, so that a worker that stops
// reading is shed at --session-buffer whether its frames wait inline or in the lane's ring.
const bufferBytes = (b: WireBuffer): number => ENVELOPE_BYTES + b.data.length + (b.lane === undefined ? 0 : Number(b.lane.length));

// A message on its way to the transport; `queued`: its bytes count in queuedBytes until written.
interface Outgoing {
  message: ServerMessage['message'];
  bytes: number;
  queued: boolean;
}

type Item =
  | { kind: 'event'; event: WireEvent; bytes: number; meta: EventMeta; dropped: boolean }
  | { kind: 'message'; message: ServerMessage['message']; bytes: number };

export class Session implements EventReceiver {
  readonly id = randomUUID();
  readonly resumeToken = randomBytes(24).toString('base64url');
  readonly clientName: string;
  readonly pid: number;
  /** The SDK its Hello named (as the SDK names itself to livekit_ffi_initialize), and its version. */
  readonly sdk: string;
  readonly sdkVersion: string;
  readonly log: Logger;
  private call: SessionCall | undefined;
  private seq = 0n;
  private queue: Item[] = [];
  private head = 0;
  private mediaScan = 0;
  private queuedBytes = 0;
  private inFlightBytes = 0;
  // Events already handed to a transport, kept (within the session buffer) so that a resumed
  // session can send again what its broken stream may not have delivered.
  private written: { event: WireEvent; bytes: number }[] = [];
  private writtenHead = 0;
  private writtenBytes = 0;
  private droppedSinceNotice = 0n;
  private firstDroppedSeq = 0n;
  private closed = false;
  private tokens = Number.POSITIVE_INFINITY;
  // While > 0 (a ClientBatch being handled) nothing is written, so its answers leave together.
  private corked = 0;
  // Hello.accepts_batches: what is ready at once may leave as one ServerBatch.
  private readonly acceptsBatches: boolean;
  private tokensAt = performance.now();
  droppedEvents = 0n;
  // Bridge participant-info-v1: every event this session is sent goes through here (sdk_bridges.ts).
  private readonly oldParticipantInfo: boolean;
  /** Its media lane, when its Hello asked for one and it was granted; closed when the session is released. */
  lane: MediaLane | undefined;
  /** Welcome.lane: the granted lane, or why none was (unset when none was asked for). */
  laneWelcome: WireLane | undefined;
  /** Set when what may not be dropped (responses, notices, non-media events) passed the hard cap: the broker then fails the session. */
  overflowed = false;

  constructor(
    call: SessionCall,
    hello: Hello,
    parentLog: Logger,
    private readonly limits: SessionLimits,
    private readonly metrics: Metrics,
    /** What the broker does for this session's SDK (sdk_bridges.ts). */
    readonly bridges: ReadonlySet<BridgeName>,
  ) {
    this.call = call;
    this.clientName = hello.clientName;
    this.pid = hello.pid;
    this.sdk = hello.sdk;
    this.sdkVersion = hello.sdkVersion;
    this.log = parentLog.child({ session: this.id, client: hello.clientName, clientPid: hello.pid });
    this.oldParticipantInfo = bridges.has('participant-info-v1');
    this.acceptsBatches = hello.acceptsBatches;
  }

  get connected(): boolean {
    return this.call !== undefined;
  }

  /**
   * Token bucket for --max-request-rate: up to one second's worth of requests in a burst, then
   * `rate` per second. False when the session is over its rate.
   */
  takeRequestToken(rate: number): boolean {
    const now = performance.now();
    this.tokens = Math.min(rate, this.tokens + ((now - this.tokensAt) / 1000) * rate);
    this.tokensAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Nothing queued and nothing held by the transport. */
  get isDrained(): boolean {
    return this.head >= this.queue.length && this.inFlightBytes === 0;
  }

  /** Events queued in the broker, not yet handed to the transport. */
  get queuedEvents(): number {
    let n = 0;
    for (let i = this.head; i < this.queue.length; i++) {
      const item = this.queue[i]!;
      if (item.kind === 'event' && !item.dropped) n++;
    }
    return n;
  }

  welcome(welcome: Omit<Welcome, '$typeName' | 'sessionId' | 'resumeToken' | 'bridges'>): void {
    this.push({ kind: 'message', message: this.welcomeMessage(welcome), bytes: 128 });
    this.pump();
  }

  respond(response: Response): void {
    let bytes = ENVELOPE_BYTES + response.ffiResponse.length;
    for (const b of response.buffers) bytes += bufferBytes(b);
    this.push({ kind: 'message', message: { case: 'response', value: response }, bytes });
    this.pump();
  }

  notice(notice: Notice): void {
    this.push({ kind: 'message', message: { case: 'notice', value: notice }, bytes: 64 });
    this.pump();
  }

  /** Queues one event; media events (frames) are the ones that may be dropped. */
  enqueueEvent(ffiEvent: Uint8Array, buffers: WireBuffer[], meta: EventMeta): void {
    if (this.oldParticipantInfo) ffiEvent = eventWithOldParticipantInfo(ffiEvent);
    let bytes = ENVELOPE_BYTES + ffiEvent.length;
    for (const b of buffers) bytes += bufferBytes(b);
    this.push({ kind: 'event', event: create(EventSchema, { seq: ++this.seq, ffiEvent, buffers }), bytes, meta, dropped: false });
    if (this.queuedBytes + this.inFlightBytes > this.limits.bufferBytes) this.shed();
  }

  flushEvents(): void {
    this.pump();
  }

  /** Holds writes until uncork(): what a batch of requests is answered with leaves together. */
  cork(): void {
    this.corked++;
  }

  uncork(): void {
    if (--this.corked === 0) this.pump();
  }

  /** The stream broke: keep queueing until attach() or close(). */
  detach(): void {
    this.call = undefined;
    this.inFlightBytes = 0; // what the broken transport held is gone with it
  }

  /**
   * A resumed stream: the Welcome first, then the events after `lastSeq` (the last the client
   * received) that the broker still holds, an EventsDropped notice for those it does not, and
   * everything queued, in order. lastSeq 0: the client does not know; nothing is sent again.
   */
  resume(call: SessionCall, welcome: Omit<Welcome, '$typeName' | 'sessionId' | 'resumeToken' | 'bridges'>, lastSeq: bigint): void {
    this.call = call;
    // Alone: the first ServerMessage of a stream is its Welcome, never inside a batch.
    this.send(call, [{ message: this.welcomeMessage(welcome), bytes: 128, queued: false }]);
    const out: Outgoing[] = [];
    if (lastSeq > 0n) {
      const again = this.written.slice(this.writtenHead).filter((w) => w.event.seq > lastSeq);
      const firstHeld = again[0]?.event.seq ?? this.firstQueuedSeq();
      if (firstHeld > lastSeq + 1n) {
        this.droppedEvents += firstHeld - lastSeq - 1n;
        this.metrics.eventsDropped.inc({ kind: 'any', reason: 'stream_broken' }, Number(firstHeld - lastSeq - 1n));
        out.push(this.droppedNotice(firstHeld - lastSeq - 1n, lastSeq + 1n, 'sent on the broken stream and no longer held by the broker'));
      }
      if (again.length > 0) {
        out.push({ message: { case: 'events', value: { $typeName: 'livekit.ffi_broker.v1.EventBatch', events: again.map((w) => w.event) } }, bytes: again.reduce((a, w) => a + w.bytes, 0), queued: false });
      }
    }
    this.send(call, out);
    this.pump();
  }

  private welcomeMessage(welcome: Omit<Welcome, '$typeName' | 'sessionId' | 'resumeToken' | 'bridges'>): ServerMessage['message'] {
    return { case: 'welcome', value: create(WelcomeSchema, { ...welcome, sessionId: this.id, resumeToken: this.resumeToken, bridges: [...this.bridges], lane: this.laneWelcome }) };
  }

  private firstQueuedSeq(): bigint {
    for (let i = this.head; i < this.queue.length; i++) {
      const item = this.queue[i]!;
      if (item.kind === 'event') return item.event.seq;
    }
    return this.seq + 1n;
  }

  isAttachedTo(call: SessionCall): boolean {
    return this.call === call;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Ends the stream from the broker's side and stops sending: status OK, or the failure given. */
  close(failure?: { code: number; details: string }): void {
    if (this.closed) return;
    this.closed = true;
    this.lane?.close();
    const call = this.call;
    this.call = undefined;
    // grpc-js ends a server stream with the status of an emitted error.
    if (failure !== undefined) call?.emit('error', failure);
    else call?.end();
  }

  private push(item: Item): void {
    if (this.closed) return;
    this.queue.push(item);
    this.queuedBytes += item.bytes;
    if (item.kind === 'message' && this.queuedBytes + this.inFlightBytes > this.limits.hardCapBytes) this.overflowed = true;
  }

  // Over the buffer: drop the oldest media frames until under it again. What cannot be dropped
  // only counts against the hard cap.
  private shed(): void {
    if (this.mediaScan < this.head) this.mediaScan = this.head;
    while (this.queuedBytes + this.inFlightBytes > this.limits.bufferBytes && this.mediaScan < this.queue.length) {
      const item = this.queue[this.mediaScan++]!;
      if (item.kind !== 'event' || !item.meta.media || item.dropped) continue;
      item.dropped = true;
      for (const b of item.event.buffers) if (b.lane !== undefined) this.lane?.forget(b.lane);
      this.metrics.eventsDropped.inc({ kind: item.meta.kind, reason: 'slow_reader' });
      this.queuedBytes -= item.bytes;
      if (this.droppedSinceNotice === 0n) this.firstDroppedSeq = item.event.seq;
      this.droppedSinceNotice++;
      this.droppedEvents++;
    }
    if (this.queuedBytes + this.inFlightBytes > this.limits.hardCapBytes) this.overflowed = true;
  }

  private pump(): void {
    const call = this.call;
    if (call === undefined || this.corked > 0) return;
    const out: Outgoing[] = [];
    let pending = 0;
    while (this.head < this.queue.length && this.inFlightBytes + pending < IN_FLIGHT_BYTES) {
      if (this.droppedSinceNotice > 0n) out.push(this.dropNotice());
      const item = this.queue[this.head]!;
      if (item.kind === 'message') {
        this.head++;
        out.push({ message: item.message, bytes: item.bytes, queued: true });
        pending += item.bytes;
        continue;
      }
      const events: WireEvent[] = [];
      let bytes = 0;
      while (this.head < this.queue.length && events.length < MAX_EVENTS_PER_BATCH && this.inFlightBytes + pending + bytes < IN_FLIGHT_BYTES) {
        const next = this.queue[this.head]!;
        if (next.kind !== 'event') break;
        this.head++;
        if (next.dropped) continue;
        this.metrics.eventsDelivered.inc({ kind: next.meta.kind });
        this.metrics.eventLatency.observe(Number(process.hrtime.bigint() - next.meta.enqueuedNs) / 1e9);
        events.push(next.event);
        bytes += next.bytes;
        this.remember(next.event, next.bytes);
      }
      if (events.length === 0) continue;
      out.push({ message: { case: 'events', value: { $typeName: 'livekit.ffi_broker.v1.EventBatch', events } }, bytes, queued: true });
      pending += bytes;
    }
    this.send(call, out);
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.mediaScan = Math.max(0, this.mediaScan - this.head);
      this.head = 0;
    }
  }

  private remember(event: WireEvent, bytes: number): void {
    this.written.push({ event, bytes });
    this.writtenBytes += bytes;
    const keep = Math.min(REPLAY_BYTES, this.limits.bufferBytes);
    while (this.writtenBytes > keep && this.writtenHead < this.written.length) this.writtenBytes -= this.written[this.writtenHead++]!.bytes;
    // Compacted now and then: a slice per event copied the whole list each time (11-14 % of the
    // broker's samples at 20 streams once it was full).
    if (this.writtenHead > 1024 && this.writtenHead * 2 > this.written.length) {
      this.written = this.written.slice(this.writtenHead);
      this.writtenHead = 0;
    }
  }

  private dropNotice(): Outgoing {
    const dropped = this.droppedSinceNotice;
    this.droppedSinceNotice = 0n;
    this.log.warn({ dropped: Number(dropped), firstSeq: String(this.firstDroppedSeq) }, 'session is not reading fast enough: media frames dropped');
    return this.droppedNotice(dropped, this.firstDroppedSeq, `over the session buffer of ${this.limits.bufferBytes} bytes: the worker is not reading fast enough`);
  }

  private droppedNotice(count: bigint, firstSeq: bigint, reason: string): Outgoing {
    const notice = create(NoticeSchema, { notice: { case: 'eventsDropped', value: { $typeName: 'livekit.ffi_broker.v1.EventsDropped', count, firstSeq, reason } } });
    return { message: { case: 'notice', value: notice }, bytes: 64, queued: false };
  }

  /**
   * Hands `out` to the transport: one ServerBatch when the client accepts batches and there is
   * more than one message (one gRPC message, one HTTP/2 frame, instead of one each), else one
   * write per message.
   */
  private send(call: SessionCall, out: Outgoing[]): void {
    if (out.length === 0) return;
    if (out.length === 1 || !this.acceptsBatches) {
      for (const item of out) this.write(call, create(ServerMessageSchema, { message: item.message }), item.bytes, item.queued);
      return;
    }
    let bytes = 0;
    let queued = 0;
    const messages: ServerMessage[] = [];
    for (const item of out) {
      messages.push(create(ServerMessageSchema, { message: item.message }));
      bytes += item.bytes;
      if (item.queued) queued += item.bytes;
    }
    this.queuedBytes -= queued;
    this.write(call, create(ServerMessageSchema, { message: { case: 'batch', value: { $typeName: 'livekit.ffi_broker.v1.ServerBatch', messages } } }), bytes, false);
  }

  private write(call: SessionCall, message: ServerMessage, bytes: number, queued: boolean): void {
    if (queued) this.queuedBytes -= bytes;
    this.inFlightBytes += bytes;
    call.write(message, () => {
      // A callback of a stream since detached belongs to the old transport's accounting.
      if (this.call !== call) return;
      this.inFlightBytes -= bytes;
      this.pump();
    });
  }
}
