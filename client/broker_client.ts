// A worker's side of one broker Session: FfiRequests go out as encoded bytes, FfiResponses and
// FfiEvents come back decoded. Uses only the generated schema classes, so a worker that talks to
// the broker never loads liblivekit_ffi (never import the @livekit/rtc-ffi-bindings package root).
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import { FfiEvent, FfiRequest, FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import {
  BufferSchema,
  ClientMessageSchema,
  DropHandlesSchema,
  Error_Code,
  HelloSchema,
  InfoRequestSchema,
  LaneRequestSchema,
  PackageFileSchema,
  RequestSchema,
  type Buffer as ContractBuffer,
  type ClientMessage,
  type EventBatch,
  type InfoResponse,
  type LaneRequest,
  type MediaLane as WireLane,
  type Notice,
  type Response,
  type ServerMessage,
  type Welcome,
} from '../proto/gen/ffi_broker_pb.js';
import { FfiBrokerService } from '../proto/service.js';
import { DEFAULT_ADDRESS, parseAddress } from './address.js';
import { BrokerError } from './broker_error.js';
import { encodeClientBatch } from './client_batch.js';
import { ClientLane, LANE_MIN_BYTES } from './media_lane.js';

/** Env var naming the broker address when none is passed. */
export const ADDRESS_ENV = 'LIVEKIT_FFI_BROKER';

const MiB = 1024 * 1024;

/** Channel options of every client channel: video frames and batched events exceed gRPC's 4 MiB default. */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 64 * MiB,
  'grpc.max_send_message_length': 64 * MiB,
};

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_RESUME_WINDOW_MS = 10_000;
// Statuses of a transport that broke, which a new stream may mend.
const RESUMABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.CANCELLED, grpc.status.INTERNAL]);
const DEFAULT_INFO_TIMEOUT_MS = 10_000;
// How long close() waits for the broker to finish the stream before cancelling it.
const CLOSE_GRACE_MS = 5_000;

export interface ConnectOptions {
  clientName?: string;
  clientVersion?: string;
  /**
   * The SDK whose FfiRequests this client carries, as that SDK names itself to
   * livekit_ffi_initialize (e.g. sdk "node", sdkVersion "0.13.1"): the broker bridges the known
   * protocol differences between that release and its liblivekit_ffi (Welcome.bridges). Default:
   * none (requests written against the broker's own schema need no bridge).
   */
  sdk?: string;
  sdkVersion?: string;
  authToken?: string;
  /** From an earlier session's Welcome, to take that session (and its handles) over. */
  resumeToken?: string;
  /** With resumeToken: the last event seq received, so the broker sends again what followed. */
  lastSeq?: bigint;
  credentials?: grpc.ChannelCredentials;
  /** Until Welcome; default 10000. */
  connectTimeoutMs?: number;
  /**
   * When the stream breaks (the broker restarts its transport, a proxy drops it), resume the
   * session, its handles and its events, for up to this many ms (default 10000, the broker's
   * default --resume-grace; 0: do not resume). Requests pending at the break reject with
   * UNAVAILABLE (their outcome is unknown); requests made while resuming wait for it.
   */
  resumeWindowMs?: number;
  /**
   * When the session is lost for good (the broker process is gone or restarted, or the resume
   * window ended), keep reconnecting with exponential backoff and start a NEW session once a
   * broker answers ('reconnected'). The old session's handles are gone: create your objects again.
   * Requests made meanwhile reject at once with UNAVAILABLE. Default: off (the client closes).
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * Ask for a shared-memory media lane (frames cross without gRPC; see ClientLane). Default: on
   * for a unix: address, off for TCP (the broker must be on this host). Sizes in bytes, 0 or
   * unset: the broker's default (1 MiB each); a 1080p I420 frame needs about 3 MiB.
   */
  mediaLane?: boolean | { toBrokerBytes?: number; toClientBytes?: number };
}

export interface ReconnectOptions {
  /** First delay; default 100 ms. Each next one doubles, up to maxDelayMs, times a random 0.5–1. */
  initialDelayMs?: number;
  /** Default 5000 ms. */
  maxDelayMs?: number;
  /** Give up (close with the last error) after this many attempts; default unlimited. */
  maxAttempts?: number;
}

export interface InfoOptions {
  credentials?: grpc.ChannelCredentials;
  /** Deadline of the Info call; default 10000. */
  timeoutMs?: number;
}

/** One FfiEvent of the session, with the memory its pointer fields refer to (keyed by pointer value). */
export interface BrokerEvent {
  seq: bigint;
  event: FfiEvent;
  buffers: Map<bigint, Uint8Array>;
}

/** A file of an installed package that a request names by path (Request.package_files). */
export interface PackageFileInit {
  /** Exactly as it appears in the request. */
  path: string;
  distribution: string;
  version: string;
  /** Its path inside the distribution, '/'-separated, as in its RECORD. */
  file: string;
}

export interface RequestResult {
  response: FfiResponse;
  buffers: Map<bigint, Uint8Array>;
}

export type BrokerClientEvents = {
  event: [event: BrokerEvent];
  notice: [notice: Notice];
  /** The session ended: undefined when it ended cleanly, else why it failed. */
  close: [error: BrokerError | undefined];
  /** The stream broke and the client is resuming the session. */
  resuming: [error: BrokerError];
  /** The session was resumed on a new stream; events continue after the last one received. */
  resumed: [];
  /**
   * The session and every handle it owned are gone (the broker process died or restarted, or the
   * resume window ended). Without `reconnect` the client then closes with this error.
   */
  sessionLost: [error: BrokerError];
  /** With `reconnect`: a new session is open (new sessionId, no handles); events start again at seq 1. */
  reconnected: [info: { sessionId: string; attempts: number }];
  /** Something the broker sent that the client could not use (e.g. an FfiEvent that does not decode). */
  warning: [error: BrokerError];
};

// Written as messages, or as bytes already encoded (the batches of sendBatched).
type SessionCall = grpc.ClientDuplexStream<ClientMessage | Uint8Array, ServerMessage>;
const serializeClientMessage = (m: ClientMessage | Uint8Array): Buffer => (m instanceof Uint8Array ? Buffer.from(m.buffer, m.byteOffset, m.byteLength) : FfiBrokerService.session.requestSerialize(m));
type State = 'connecting' | 'open' | 'resuming' | 'reconnecting' | 'closing' | 'closed';

// A broker that is gone: nothing listens on its socket or port. Its sessions died with it, so a
// resume is pointless and the session is reported lost at once instead of after the window.
const BROKER_GONE = /ECONNREFUSED|ENOENT/;

interface Pending {
  resolve(response: Response): void;
  reject(error: BrokerError): void;
}

function resolveAddress(address: string | undefined): string {
  if (address !== undefined && address !== '') return address;
  const fromEnv = process.env[ADDRESS_ENV];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_ADDRESS;
}

/** The request's memory as contract Buffers: in the lane where it has room, else inline; `slots` gets what the lane holds. */
function toContractBuffers(buffers: Iterable<readonly [bigint, Uint8Array]> | undefined, lane: ClientLane | undefined, slots: ReturnType<ClientLane['place']>[]): ContractBuffer[] {
  const out: ContractBuffer[] = [];
  if (buffers === undefined) return out;
  for (const [ptr, data] of buffers) {
    const placed = lane !== undefined && data.length >= LANE_MIN_BYTES ? lane.place(data) : undefined;
    if (placed === undefined) {
      out.push(create(BufferSchema, { ptr, data }));
    } else {
      slots.push(placed);
      out.push(create(BufferSchema, { ptr, lane: placed.ref }));
    }
  }
  return out;
}

/** Buffers keyed by pointer; a lane reference is read out of the lane. */
function toBufferMap(buffers: readonly ContractBuffer[], lane: ClientLane | undefined): Map<bigint, Uint8Array> {
  const map = new Map<bigint, Uint8Array>();
  for (const b of buffers) {
    if (b.lane === undefined) map.set(b.ptr, b.data);
    else if (lane === undefined) throw new Error(`a Buffer refers to lane region ${b.lane.region}, and this client has no lane open`);
    else map.set(b.ptr, lane.read(b.lane));
  }
  return map;
}

/**
 * The async iterator behind events(): an unbounded queue fed by the client, so a consumer that
 * falls behind loses nothing (the broker's own per-session limits and EventsDropped notices apply).
 */
class EventQueue implements AsyncIterableIterator<BrokerEvent> {
  private items: BrokerEvent[] = [];
  private head = 0;
  private waiters: Array<{ resolve(r: IteratorResult<BrokerEvent>): void; reject(e: unknown): void }> = [];
  private ended = false;
  private error: BrokerError | undefined;

  constructor(private readonly unsubscribe: () => void) {}

  push(event: BrokerEvent): void {
    if (this.ended) return;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) waiter.resolve({ value: event, done: false });
    else this.items.push(event);
  }

  /** The client closed: queued events are still delivered, then the error (once) or the end. */
  end(error: BrokerError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.unsubscribe();
    // Waiters exist only while the queue is empty, so they are owed the end right away.
    for (const waiter of this.waiters.splice(0)) {
      const err = this.takeError();
      if (err !== undefined) waiter.reject(err);
      else waiter.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<BrokerEvent>> {
    if (this.head < this.items.length) {
      const value = this.items[this.head++]!;
      // Compact now and then instead of shift(), which is O(n) per call on long queues.
      if (this.head >= 1024 && this.head * 2 >= this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) {
      const err = this.takeError();
      return err !== undefined ? Promise.reject(err) : Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Unsubscribe (also what `break` in for-await calls). */
  return(): Promise<IteratorResult<BrokerEvent>> {
    this.items = [];
    this.head = 0;
    this.error = undefined;
    this.end(undefined);
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<BrokerEvent> {
    return this;
  }

  private takeError(): BrokerError | undefined {
    const err = this.error;
    this.error = undefined;
    return err;
  }
}

export class BrokerClient extends EventEmitter<BrokerClientEvents> {
  /** The address this client connected to (as given, before parsing). */
  readonly address: string;

  private state: State = 'connecting';
  private welcome: Welcome | undefined;
  private nextRequestId = 1n;
  private readonly pending = new Map<bigint, Pending>();
  private readonly subscriptions = new Set<EventQueue>();
  private status: grpc.StatusObject | undefined;
  private closeError: BrokerError | undefined;
  private connectWaiter: { resolve(): void; reject(e: BrokerError): void } | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  private resolveClosed!: () => void;
  private readonly closed = new Promise<void>((resolve) => {
    this.resolveClosed = resolve;
  });

  private call!: SessionCall;
  private lastSeq = 0n;
  private resumedAfter = 0n;
  private options: ConnectOptions = {};
  private resumedWaiters: Array<{ resolve(): void; reject(e: BrokerError): void }> = [];
  private lostReason: BrokerError | undefined;
  // Encoded ClientMessages of this turn (client_batch.ts).
  private outbox: Uint8Array[] = [];
  private lane: ClientLane | undefined;
  private laneState = 'not asked for';
  // While a response's awaiter runs (yieldToAwaiters): the stream is paused, and the rest of a
  // ServerBatch waits here, so that no message overtakes the response's continuation.
  private yielding = false;
  private deferred: ServerMessage[] = [];

  private constructor(
    private readonly grpcClient: grpc.Client,
    address: string,
  ) {
    super();
    this.address = address;
  }

  /** Opens a Session call and listens to it; events of calls replaced since are ignored. */
  private openCall(): SessionCall {
    const call = this.grpcClient.makeBidiStreamRequest(FfiBrokerService.session.path, serializeClientMessage, FfiBrokerService.session.responseDeserialize);
    this.call = call;
    this.status = undefined;
    call.on('data', (message: ServerMessage) => call === this.call && this.onMessage(message));
    // The same failure arrives as 'status'; this listener only keeps the stream from throwing it.
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => {
      if (call === this.call) this.status = status;
    });
    // 'end' comes after every message received before the status has been handled (and 'status'
    // itself), so it is where the session is over; 'close' covers a destroyed stream.
    call.on('end', () => call === this.call && this.onStreamEnd());
    call.on('close', () => call === this.call && this.onStreamEnd());
    return call;
  }

  /** Open a Session: send Hello, resolve on Welcome. Rejects with BrokerError on failure or timeout. */
  static async connect(address?: string, options: ConnectOptions = {}): Promise<BrokerClient> {
    const addr = resolveAddress(address);
    const { target } = parseAddress(addr);
    const grpcClient = new grpc.Client(target, options.credentials ?? grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    const client = new BrokerClient(grpcClient, addr);
    client.options = options;
    client.openCall();
    await client.handshake(options);
    return client;
  }

  /** The broker's identity, versions and counters (Info RPC; needs no session). */
  static async info(address?: string, options: InfoOptions = {}): Promise<InfoResponse> {
    const addr = resolveAddress(address);
    const { target } = parseAddress(addr);
    const grpcClient = new grpc.Client(target, options.credentials ?? grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_INFO_TIMEOUT_MS);
    return new Promise<InfoResponse>((resolve, reject) => {
      grpcClient.makeUnaryRequest(
        FfiBrokerService.info.path,
        FfiBrokerService.info.requestSerialize,
        FfiBrokerService.info.responseDeserialize,
        create(InfoRequestSchema),
        { deadline },
        (err, value) => {
          grpcClient.close();
          if (err !== null || value === undefined) {
            reject(BrokerError.fromGrpcError(err ?? new Error('no response'), `Info from the broker at ${addr} failed`));
          } else {
            resolve(value);
          }
        },
      );
    });
  }

  get sessionId(): string {
    return this.welcome?.sessionId ?? '';
  }
  get resumeToken(): string {
    return this.welcome?.resumeToken ?? '';
  }
  get ffiVersion(): string {
    return this.welcome?.ffiVersion ?? '';
  }
  get brokerVersion(): string {
    return this.welcome?.brokerVersion ?? '';
  }
  /** The bridges the broker applies for the SDK this client named (see ConnectOptions.sdk). */
  get bridges(): readonly string[] {
    return this.welcome?.bridges ?? [];
  }
  /** "open" when media travel through the shared-memory lane, else why they travel inline. */
  get mediaLane(): string {
    return this.laneState;
  }
  /** How many buffers crossed in the lane so far (placed: of requests; read: of events); undefined without one. */
  get mediaLaneCounters(): { placed: number; read: number } | undefined {
    return this.lane === undefined ? undefined : { ...this.lane.counters };
  }
  /** True when the broker took over the session named by the resume token, with its handles. */
  get resumed(): boolean {
    return this.welcome?.resumed ?? false;
  }
  /** False once close() was called or the stream ended. */
  get isOpen(): boolean {
    return this.state === 'open';
  }
  /** Why the session failed; undefined while open or after a clean close. */
  get closeReason(): BrokerError | undefined {
    return this.closeError;
  }

  /**
   * Send one FfiRequest (a v1 message or its encoded bytes) with the memory its pointer fields
   * refer to, keyed by the pointer values written in the request; resolve with the decoded
   * FfiResponse and the memory the response's pointers refer to. `packageFiles` describes the
   * files of installed packages the request names by path (an audio filter plugin, its model):
   * the broker uses its own copy of each (see proto/package_file_fields.json).
   */
  async request(
    req: FfiRequest | Uint8Array,
    buffers?: Iterable<readonly [bigint, Uint8Array]> | ReadonlyMap<bigint, Uint8Array>,
    packageFiles: readonly PackageFileInit[] = [],
  ): Promise<RequestResult> {
    const ffiRequest = req instanceof Uint8Array ? req : req.toBinary();
    const slots: ReturnType<ClientLane['place']>[] = [];
    let reply: Response;
    try {
      reply = await this.exchange((requestId) => ({
        case: 'request',
        value: create(RequestSchema, { requestId, ffiRequest, buffers: toContractBuffers(buffers, this.lane, slots), packageFiles: packageFiles.map((f) => create(PackageFileSchema, f)) }),
      }));
    } finally {
      // Answered or failed, the broker no longer reads what this request placed in the lane.
      for (const placed of slots) this.lane?.free(placed!.slot);
    }
    if (reply.error !== undefined) throw BrokerError.fromContract(reply.error);
    let response: FfiResponse;
    try {
      response = FfiResponse.fromBinary(reply.ffiResponse);
    } catch (err) {
      throw new BrokerError(Error_Code.CODE_UNSPECIFIED, `the broker's FfiResponse does not decode: ${String(err)}`, {
        cause: err,
      });
    }
    return { response, buffers: toBufferMap(reply.buffers, this.lane) };
  }

  /**
   * Release handles this session owns; resolves once the broker has dropped them, rejects with
   * PERMISSION_DENIED if it refused any (handles of other sessions). Needs a broker that answers
   * DropHandles.request_id (this project's broker does).
   */
  async dropHandles(handles: Iterable<bigint>): Promise<void> {
    const list = [...handles];
    if (list.length === 0) return;
    const reply = await this.exchange((requestId) => ({
      case: 'dropHandles',
      value: create(DropHandlesSchema, { handles: list, requestId }),
    }));
    if (reply.error !== undefined) throw BrokerError.fromContract(reply.error);
  }

  /**
   * Every event from now on, in order. Each iterator has its own queue; `return()` (or `break` in
   * for-await) unsubscribes. It ends when the client closes: cleanly, or by throwing the failure.
   */
  events(): AsyncIterableIterator<BrokerEvent> {
    const queue: EventQueue = new EventQueue(() => this.subscriptions.delete(queue));
    if (this.state === 'open' || this.state === 'connecting' || this.state === 'resuming' || this.state === 'reconnecting') this.subscriptions.add(queue);
    else queue.end(this.closeError);
    return queue;
  }

  /**
   * End the session (half-close; the broker then finishes the stream). Pending requests reject
   * with UNAVAILABLE "session closed", iterators end. Resolves when the stream has closed.
   */
  close(): Promise<void> {
    if (this.state === 'resuming' || this.state === 'reconnecting') {
      this.finish(undefined);
      return this.closed;
    }
    if (this.state !== 'open') return this.closed;
    this.state = 'closing';
    this.rejectPending(new BrokerError(Error_Code.UNAVAILABLE, 'session closed'));
    this.endSubscriptions(undefined);
    this.call.end();
    // A broker that never finishes the stream must not keep close() (and the process) waiting.
    this.closeTimer = setTimeout(() => this.call.cancel(), CLOSE_GRACE_MS);
    return this.closed;
  }

  private laneRequest(options: ConnectOptions): LaneRequest | undefined {
    const asked = options.mediaLane ?? parseAddress(this.address).kind === 'unix';
    if (asked === false) return undefined;
    const sizes = asked === true ? {} : asked;
    return create(LaneRequestSchema, { toBrokerBytes: BigInt(sizes.toBrokerBytes ?? 0), toClientBytes: BigInt(sizes.toClientBytes ?? 0) });
  }

  /** The lane of a Welcome: kept across a resume (the same regions), else opened anew. */
  private openLane(granted: WireLane | undefined): void {
    if (this.lane !== undefined && granted?.toBroker?.id === this.lane.granted.toBroker?.id) return;
    this.lane?.close();
    this.lane = undefined;
    if (granted === undefined) {
      this.laneState = 'not asked for';
    } else if (granted.toBroker === undefined) {
      this.laneState = `not granted: ${granted.unavailable}`;
    } else {
      try {
        this.lane = new ClientLane(granted);
        this.laneState = 'open';
      } catch (err) {
        this.laneState = `not opened: ${(err as Error).message}`;
      }
    }
  }

  private handshake(options: ConnectOptions, timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.connectWaiter = { resolve, reject };
      this.connectTimer = setTimeout(() => {
        this.failHandshake(new BrokerError(Error_Code.UNAVAILABLE, `no Welcome from the broker at ${this.address} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.send({
        case: 'hello',
        value: create(HelloSchema, {
          clientName: options.clientName ?? 'node-worker',
          clientVersion: options.clientVersion ?? '',
          sdk: options.sdk ?? '',
          sdkVersion: options.sdkVersion ?? '',
          pid: process.pid,
          resumeToken: options.resumeToken ?? '',
          lastSeq: options.lastSeq ?? 0n,
          authToken: options.authToken ?? '',
          acceptsBatches: true,
          lane: this.laneRequest(options),
        }),
      });
    });
  }

  private async exchange(build: (requestId: bigint) => ClientMessage['message']): Promise<Response> {
    if (this.state === 'reconnecting') {
      throw new BrokerError(
        Error_Code.UNAVAILABLE,
        `no session with the broker at ${this.address}: ${this.lostReason?.detail ?? 'the session was lost'}; reconnecting with backoff. Wait for the 'reconnected' event, then create your objects again (the old session's handles are gone)`,
      );
    }
    if (this.state === 'resuming') await new Promise<void>((resolve, reject) => this.resumedWaiters.push({ resolve, reject }));
    if (this.state !== 'open') {
      return Promise.reject(this.closeError ?? new BrokerError(Error_Code.UNAVAILABLE, 'session closed'));
    }
    const requestId = this.nextRequestId++;
    return new Promise<Response>((resolve, reject) => {
      this.pending.set(requestId, { resolve, reject });
      this.sendBatched(build(requestId));
    });
  }

  private send(message: ClientMessage['message']): void {
    this.call.write(create(ClientMessageSchema, { message }));
  }

  /**
   * Requests and drops issued in one event-loop turn leave in one ClientMessage (a ClientBatch
   * when there are several): one gRPC message and one wake-up of the broker instead of one each.
   * setImmediate waits for no timer, only for the rest of the current turn.
   */
  private sendBatched(message: ClientMessage['message']): void {
    this.outbox.push(toBinary(ClientMessageSchema, create(ClientMessageSchema, { message })));
    if (this.outbox.length === 1) setImmediate(() => this.flushOutbox());
  }

  private flushOutbox(): void {
    const messages = this.outbox;
    this.outbox = [];
    // A session that closed or broke meanwhile rejected these requests already.
    if (messages.length === 0 || this.state !== 'open') return;
    this.call.write(messages.length === 1 ? messages[0]! : encodeClientBatch(messages));
  }

  private onMessage(message: ServerMessage): void {
    const body = message.message;
    if (this.state === 'connecting' || ((this.state === 'resuming' || this.state === 'reconnecting') && this.connectWaiter !== undefined)) {
      if (body.case !== 'welcome') {
        this.failHandshake(new BrokerError(Error_Code.UNAVAILABLE, `the broker sent ${body.case ?? 'an empty message'} before Welcome`));
        return;
      }
      if (this.state === 'resuming' && !body.value.resumed) {
        this.failHandshake(new BrokerError(Error_Code.UNAVAILABLE, 'the broker started a new session instead of resuming this one'));
        return;
      }
      this.welcome = body.value;
      this.openLane(body.value.lane);
      this.state = 'open';
      clearTimeout(this.connectTimer);
      this.connectWaiter?.resolve();
      this.connectWaiter = undefined;
      this.yieldToAwaiters();
      return;
    }
    switch (body.case) {
      case 'response':
        this.onResponse(body.value);
        break;
      case 'events':
        this.onEvents(body.value);
        break;
      case 'notice':
        if (this.state === 'open') this.emit('notice', body.value);
        break;
      case 'batch':
        this.onBatch(body.value.messages);
        break;
      default:
        // A second Welcome, or a message kind newer than this client: nothing to do with it.
        break;
    }
  }

  private onResponse(response: Response): void {
    const pending = this.pending.get(response.requestId);
    // None after close() rejected it, or for an id this client never sent.
    if (pending === undefined) return;
    this.pending.delete(response.requestId);
    pending.resolve(response);
    this.yieldToAwaiters();
  }

  /**
   * The broker writes a Response before any Event about what it returned, and both may arrive in
   * one read. Holding further messages until the awaiting code has run (its continuation is a
   * microtask; setImmediate comes after them) lets `await request(); on('event', ...)` see them.
   */
  private yieldToAwaiters(): void {
    if (this.yielding) return;
    this.yielding = true;
    const call = this.call;
    call.pause();
    setImmediate(() => {
      this.yielding = false;
      const rest = this.deferred;
      this.deferred = [];
      if (call === this.call) this.onBatch(rest);
      // A response in what was deferred yields again, and resumes the stream after its own turn.
      if (!this.yielding) call.resume();
    });
  }

  /** The messages of a ServerBatch, in order, as if each had come alone. */
  private onBatch(messages: readonly ServerMessage[]): void {
    for (const message of messages) {
      if (this.yielding) this.deferred.push(message);
      else this.onMessage(message);
    }
  }

  private onEvents(batch: EventBatch): void {
    if (this.state !== 'open') return;
    let release = 0n;
    try {
      this.deliver(batch, (r) => {
        if (r > release) release = r;
      });
    } finally {
      this.lane?.release(release);
    }
  }

  private deliver(batch: EventBatch, read: (release: bigint) => void): void {
    for (const item of batch.events) {
      // A resumed session may send again what arrived just before the break.
      if (item.seq <= this.resumedAfter) continue;
      let event: FfiEvent;
      try {
        event = FfiEvent.fromBinary(item.ffiEvent);
      } catch (err) {
        this.emit(
          'warning',
          new BrokerError(Error_Code.CODE_UNSPECIFIED, `event seq ${item.seq}: FfiEvent does not decode: ${String(err)}`, {
            cause: err,
          }),
        );
        continue;
      }
      this.lastSeq = item.seq;
      let buffers: Map<bigint, Uint8Array>;
      try {
        buffers = toBufferMap(item.buffers, this.lane);
      } catch (err) {
        this.emit('warning', new BrokerError(Error_Code.CODE_UNSPECIFIED, `event seq ${item.seq}: its memory could not be read: ${String(err)}`, { cause: err }));
        buffers = new Map();
      }
      for (const b of item.buffers) if (b.lane !== undefined) read(b.lane.release);
      const delivered: BrokerEvent = { seq: item.seq, event, buffers };
      this.emit('event', delivered);
      for (const queue of this.subscriptions) queue.push(delivered);
      // A listener may have closed the client.
      if (this.state !== 'open') return;
    }
  }

  private onStreamEnd(): void {
    if (this.state === 'closed') return;
    if (this.state === 'closing') {
      this.finish(undefined);
      return;
    }
    const status = this.status;
    if (this.state === 'resuming' || this.state === 'reconnecting') {
      if (this.connectWaiter !== undefined) this.failHandshake(status === undefined ? new BrokerError(Error_Code.UNAVAILABLE, 'stream closed before Welcome') : BrokerError.fromGrpcStatus(status, 'resume failed'));
      return;
    }
    if (this.state === 'open' && (status === undefined || RESUMABLE.has(status.code)) && (this.options.resumeWindowMs ?? DEFAULT_RESUME_WINDOW_MS) > 0) {
      void this.resume(status === undefined ? new BrokerError(Error_Code.UNAVAILABLE, 'stream closed without a status') : BrokerError.fromGrpcStatus(status, `session stream to ${this.address} broke`));
      return;
    }
    if (this.state === 'open' && (status === undefined || RESUMABLE.has(status.code)) && this.options.reconnect) {
      // No resume window: the session is lost with its stream.
      this.lose(status === undefined ? new BrokerError(Error_Code.UNAVAILABLE, `session stream to ${this.address} closed without a status`) : BrokerError.fromGrpcStatus(status, `session stream to ${this.address} broke`));
      return;
    }
    if (status === undefined) {
      this.finish(new BrokerError(Error_Code.UNAVAILABLE, `session stream to ${this.address} closed without a status`));
    } else if (status.code !== grpc.status.OK) {
      const context =
        this.state === 'connecting'
          ? `could not open a session with the broker at ${this.address}`
          : `session with the broker at ${this.address} failed`;
      this.finish(BrokerError.fromGrpcStatus(status, context));
    } else if (this.state === 'connecting') {
      this.finish(new BrokerError(Error_Code.UNAVAILABLE, `the broker at ${this.address} ended the session before Welcome`));
    } else {
      // The broker finished the stream with OK (e.g. after ShuttingDown): a clean end.
      this.finish(undefined, new BrokerError(Error_Code.UNAVAILABLE, 'session ended by the broker'));
    }
  }

  /** A Welcome that did not come: the connect fails, or this resume attempt does. */
  private failHandshake(error: BrokerError): void {
    if (this.state === 'resuming' || this.state === 'reconnecting') {
      clearTimeout(this.connectTimer);
      const waiter = this.connectWaiter;
      this.connectWaiter = undefined;
      this.call.cancel();
      waiter?.reject(error);
      return;
    }
    this.finish(error);
  }

  /** Reopens the session on new streams, with backoff, until it resumes or the window ends. */
  private async resume(cause: BrokerError): Promise<void> {
    this.state = 'resuming';
    this.resumedAfter = this.lastSeq;
    // Their responses went with the broken stream: the requests' outcome is unknown.
    this.rejectPending(cause);
    this.emit('resuming', cause);
    const deadline = Date.now() + (this.options.resumeWindowMs ?? DEFAULT_RESUME_WINDOW_MS);
    let lastError = cause;
    for (let delay = 50; this.state === 'resuming' && Date.now() < deadline; delay = Math.min(delay * 2, 1000)) {
      this.openCall();
      try {
        await this.handshake({ ...this.options, resumeToken: this.resumeToken, lastSeq: this.lastSeq }, Math.max(1, deadline - Date.now()));
        for (const w of this.resumedWaiters.splice(0)) w.resolve();
        this.emit('resumed');
        return;
      } catch (err) {
        lastError = err as BrokerError;
        // The broker no longer has the session (grace over, restarted), refuses us, or is gone: final.
        if (lastError.grpcCode === grpc.status.NOT_FOUND || lastError.grpcCode === grpc.status.UNAUTHENTICATED) break;
        if (lastError.grpcCode === grpc.status.UNAVAILABLE && BROKER_GONE.test(lastError.grpcDetails ?? '')) {
          lastError = new BrokerError(Error_Code.UNAVAILABLE, `the broker at ${this.address} is gone (${lastError.grpcDetails}); its sessions and their handles went with it`, { grpcCode: lastError.grpcCode, grpcDetails: lastError.grpcDetails });
          break;
        }
      }
      await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(0, deadline - Date.now()))));
    }
    if (this.state === 'resuming') this.lose(lastError);
  }

  /** The session is gone for good: tell the application, then reconnect or close. */
  private lose(error: BrokerError): void {
    this.lostReason = error;
    const reconnect = this.options.reconnect;
    if (reconnect === undefined || reconnect === false) {
      this.emit('sessionLost', error);
      this.finish(error);
      return;
    }
    this.state = 'reconnecting';
    this.rejectPending(error);
    for (const w of this.resumedWaiters.splice(0)) w.reject(error);
    this.emit('sessionLost', error);
    void this.reconnect(reconnect === true ? {} : reconnect, error);
  }

  /** New sessions, with jittered exponential backoff, until one opens or the attempts run out. */
  private async reconnect(options: ReconnectOptions, cause: BrokerError): Promise<void> {
    const first = options.initialDelayMs ?? 100;
    const max = options.maxDelayMs ?? 5000;
    const attempts = options.maxAttempts ?? Number.POSITIVE_INFINITY;
    let lastError = cause;
    for (let attempt = 1; this.state === 'reconnecting' && attempt <= attempts; attempt++) {
      const delay = Math.min(max, first * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      await new Promise((r) => setTimeout(r, delay));
      if (this.state !== 'reconnecting') return;
      this.openCall();
      try {
        await this.handshake({ ...this.options, resumeToken: undefined, lastSeq: undefined });
        this.lastSeq = 0n;
        this.resumedAfter = 0n;
        this.lostReason = undefined;
        this.emit('reconnected', { sessionId: this.sessionId, attempts: attempt });
        return;
      } catch (err) {
        lastError = err as BrokerError;
        if (lastError.grpcCode === grpc.status.UNAUTHENTICATED) break;
      }
    }
    if (this.state === 'reconnecting') this.finish(lastError);
  }

  private finish(error: BrokerError | undefined, pendingError?: BrokerError): void {
    if (this.state === 'closed') return;
    const wasConnecting = this.state === 'connecting';
    this.state = 'closed';
    this.closeError = error;
    clearTimeout(this.connectTimer);
    clearTimeout(this.closeTimer);
    this.rejectPending(error ?? pendingError ?? new BrokerError(Error_Code.UNAVAILABLE, 'session closed'));
    for (const w of this.resumedWaiters.splice(0)) w.reject(error ?? new BrokerError(Error_Code.UNAVAILABLE, 'session closed'));
    this.endSubscriptions(error);
    this.lane?.close();
    this.lane = undefined;
    // Not finished by the broker (timeout, protocol error): tear the call down ourselves.
    if (this.status === undefined) this.call.cancel();
    this.grpcClient.close();
    this.resolveClosed();
    if (wasConnecting) {
      this.connectWaiter?.reject(error ?? new BrokerError(Error_Code.UNAVAILABLE, 'session closed before Welcome'));
      this.connectWaiter = undefined;
    } else {
      this.emit('close', error);
    }
  }

  private rejectPending(error: BrokerError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(error);
  }

  private endSubscriptions(error: BrokerError | undefined): void {
    const all = [...this.subscriptions];
    this.subscriptions.clear();
    for (const q of all) q.end(error);
  }
}
