// One worker's Session: its gRPC stream, its event sequence numbers and the batch of events
// gathered during one drain of the native queue. Ownership lives in the HandleRegistry; the
// Broker decides what a message means, this class only writes the stream in order.
import { randomBytes, randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  EventSchema,
  ServerMessageSchema,
  type Buffer as WireBuffer,
  type ClientMessage,
  type Event as WireEvent,
  type Hello,
  type Notice,
  type Response,
  type ServerMessage,
  type Welcome,
} from '../proto/gen/ffi_broker_pb.js';
import type { EventReceiver } from './event_router.js';

export type SessionCall = ServerDuplexStream<ClientMessage, ServerMessage>;

export class Session implements EventReceiver {
  readonly id = randomUUID();
  readonly resumeToken = randomBytes(24).toString('base64url');
  readonly clientName: string;
  readonly pid: number;
  readonly log: Logger;
  connected = true;
  private seq = 0n;
  private batch: WireEvent[] = [];
  eventsDelivered = 0n;
  droppedEvents = 0n;
  /** Events written to the stream that the transport has not taken yet. */
  queuedEvents = 0;

  constructor(
    private readonly call: SessionCall,
    hello: Hello,
    parentLog: Logger,
  ) {
    this.clientName = hello.clientName;
    this.pid = hello.pid;
    this.log = parentLog.child({ session: this.id, client: hello.clientName, clientPid: hello.pid });
  }

  welcome(welcome: Omit<Welcome, '$typeName' | 'sessionId' | 'resumeToken'>): void {
    this.write({ case: 'welcome', value: { ...welcome, $typeName: 'livekit.ffi_broker.v1.Welcome', sessionId: this.id, resumeToken: this.resumeToken } });
  }

  respond(response: Response): void {
    this.write({ case: 'response', value: response });
  }

  notice(notice: Notice): void {
    this.write({ case: 'notice', value: notice });
  }

  enqueueEvent(ffiEvent: Uint8Array, buffers: WireBuffer[]): void {
    this.batch.push(create(EventSchema, { seq: ++this.seq, ffiEvent, buffers }));
  }

  flushEvents(): void {
    if (this.batch.length === 0) return;
    const events = this.batch;
    this.batch = [];
    this.eventsDelivered += BigInt(events.length);
    this.queuedEvents += events.length;
    this.write({ case: 'events', value: { $typeName: 'livekit.ffi_broker.v1.EventBatch', events } }, () => {
      this.queuedEvents -= events.length;
    });
  }

  /** Ends the stream from the broker's side (status OK). */
  end(): void {
    if (!this.connected) return;
    this.connected = false;
    this.call.end();
  }

  private write(message: ServerMessage['message'], written?: () => void): void {
    if (!this.connected) return;
    this.call.write(create(ServerMessageSchema, { message }), written);
  }
}
