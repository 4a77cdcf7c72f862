// The broker: the one owner of liblivekit_ffi in this host. Wires the native layer (library, shim,
// event pump) to the sessions of the workers, and answers the Session and Info RPCs.
import { createHash, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import { create } from '@bufbuild/protobuf';
import { status as GrpcStatus, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  InfoResponseSchema,
  MediaLaneSchema,
  NoticeSchema,
  ResponseSchema,
  type ClientMessage,
  type DropHandles,
  type Hello,
  type InfoRequest,
  type InfoResponse,
  type LaneRequest,
} from '../proto/gen/ffi_broker_pb.js';
import { Code, Refusal, SessionFailure, fail, refuse } from './errors.js';
import { Metrics } from './metrics.js';
import { EventRouter } from './event_router.js';
import { HandleRegistry } from './handle_registry.js';
import { HostPolicy, type HostPolicyOptions } from './host_policy.js';
import { MediaLane, type LaneLimits } from './media_lane.js';
import { EventPump } from './native/event_pump.js';
import { LaneMemory } from './native/lane_memory.js';
import { FfiLibrary, locateLibrary } from './native/ffi_library.js';
import { NativeShim } from './native/shim.js';
import { OutputMemory } from './output_memory.js';
import { packageVersion } from './paths.js';
import { RequestExecutor } from './request_executor.js';
import { RoomCloser } from './room_closer.js';
import { SDK_BRIDGES, bridgesFor, handlesDroppedAfter, libraryAwaitsReady, requestsAfter, type RoutedEvent } from './sdk_bridges.js';
import { Session, type SessionCall, type SessionLimits } from './session.js';

export interface BrokerOptions extends HostPolicyOptions {
  ffiLib: string | undefined;
  /** What livekit_ffi_initialize tells livekit-server the SDK is (one library per process: every session's rooms). */
  sdk: { name: string; version: string };
  /** Tokens a Hello must present one of; none: no authentication. */
  authTokens: string[];
  maxHandles: number;
  /** Requests per second per session; 0: no limit. */
  maxRequestRate: number;
  sessionLimits: SessionLimits;
  /** How long a session whose stream broke keeps its handles, waiting for a resume (0: none). */
  resumeGraceMs: number;
  /** Largest gRPC message accepted from a worker, which also bounds one request's buffers. */
  maxMessageBytes: number;
  mediaLane: LaneLimits;
}

const digest = (token: string): Buffer => createHash('sha256').update(token).digest();

// grpc-js names a Unix socket peer "unknown" (it has no address); loopback TCP is this host too.
const isLocalPeer = (peer: string): boolean => peer === 'unknown' || /^(127\.|::1|\[::1\]|::ffff:127\.)/.test(peer);

/**
 * Whether a worker on this host (Unix socket or loopback) is gone for good: its process (the pid its Hello
 * gave) no longer exists or is a zombie, so it can never resume and its session is released
 * without waiting out the grace period. In another pid namespace (a sidecar) the pid may not be
 * visible; then only the grace period applies.
 */
function workerGone(call: SessionCall, session: Session): boolean {
  if (!isLocalPeer(call.getPeer()) || session.pid === 0) return false;
  try {
    // The state follows the parenthesised command name, which may itself contain spaces.
    const stat = fs.readFileSync(`/proc/${session.pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

// How long after the client's half-close the stream must stay open to count as a clean close.
const HALF_CLOSE_SETTLE_MS = 50;
// How often a suspended session checks whether its worker process still exists.
const WORKER_POLL_MS = 100;

export class Broker {
  readonly version = packageVersion;
  readonly library: FfiLibrary;
  private readonly shim: NativeShim;
  private readonly laneMemory = new LaneMemory();
  private readonly pump: EventPump;
  // The room closer owns the async ids of the disconnects the broker issues itself.
  private readonly registry = new HandleRegistry<Session | RoomCloser>();
  private readonly closer: RoomCloser;
  private readonly executor: RequestExecutor<Session | RoomCloser>;
  private readonly router: EventRouter<Session | RoomCloser>;
  readonly metrics: Metrics;
  private readonly sessions = new Map<string, Session>();
  private readonly graceTimers = new Map<Session, NodeJS.Timeout>();
  // Compared as digests: equal length, so the comparison takes the same time whatever was sent.
  private readonly tokenDigests: Buffer[];
  private readonly startedAt = process.hrtime.bigint();
  private closing = false;

  constructor(
    private readonly options: BrokerOptions,
    private readonly log: Logger,
  ) {
    this.tokenDigests = options.authTokens.map(digest);
    this.shim = new NativeShim();
    const location = locateLibrary(options.ffiLib);
    this.library = new FfiLibrary(location, this.shim, options.sdk);
    this.closer = new RoomCloser(this.library, this.registry, libraryAwaitsReady(location.version));
    const output = new OutputMemory(this.library, this.shim, this.registry, log, (rooms) => {
      log.info({ rooms: rooms.map(String) }, 'a connect completed after its session ended');
      this.closer.close(rooms, [], log);
    });
    const policy = new HostPolicy(options, log);
    this.executor = new RequestExecutor(this.library, this.shim, this.registry, output, policy, options.maxMessageBytes);
    const plugins = policy.pluginPackages();
    if (plugins !== undefined) log.info({ audioPluginDir: options.audioPluginDir, packages: plugins }, 'audio filter plugin packages workers may use');
    this.metrics = new Metrics({
      sessions: () => {
        const all = [...this.sessions.values()];
        const connected = all.filter((s) => s.connected).length;
        return { connected, waiting: all.length - connected };
      },
      ownedHandles: () => this.registry.handleCount,
      nativeEvents: () => this.pump.drained,
      unvalidatedPointers: () => this.executor.unvalidatedPointers,
      nativeQueue: () => {
        const q = this.shim.stats();
        return { depth: Number(q.pushed - q.popped), callbackMaxSeconds: Number(q.callbackMaxNs) / 1e9 };
      },
    });
    this.router = new EventRouter(this.registry, output, log, log.child({ component: 'livekit_ffi' }), {
      // A room the closer holds belongs to no session any more: its notices go to the operator only.
      panic: (message, owner) => this.onPanic(message, owner instanceof Session ? owner : undefined),
      routed: (owner, event) => owner instanceof Session && this.bridgeAfter(owner, event),
    }, this.metrics);
    this.pump = new EventPump(this.shim, (events) => {
      for (const owner of this.router.route(events)) if (owner instanceof Session && owner.overflowed) this.overflow(owner);
    });
    if (!this.pump.start()) log.warn('could not make the event loop SCHED_BATCH; library threads may be preempted by it inside the callback');
    log.info({ ffiLibrary: location.path, ffiVersion: location.version, sdk: options.sdk }, 'liblivekit_ffi loaded and initialized');
  }

  /** The Session RPC: hello first, then requests and drops until the stream ends. */
  openSession(call: SessionCall): void {
    let session: Session | undefined;
    // Set once this stream is over: messages the client sent before it learnt that are ignored,
    // so a failed stream never starts a session or overwrites the status it ended with.
    let over = false;
    const finish = (broken: boolean) => {
      if (over) return;
      over = true;
      // A session resumed on another stream since is no longer this stream's to end.
      if (session === undefined || !session.isAttachedTo(call)) return;
      if (broken && !session.isClosed && this.options.resumeGraceMs > 0 && !this.closing && !workerGone(call, session)) this.suspend(session, call);
      else this.release(session);
    };
    const failStream = (failure: SessionFailure) => {
      this.log.warn({ session: session?.id, reason: failure.message }, 'session ended by a protocol error');
      over = true;
      const status = { code: failure.status, details: failure.message };
      if (session !== undefined && session.isAttachedTo(call)) {
        session.close(status);
        this.release(session);
      } else {
        // grpc-js ends a server stream with the status of an emitted error.
        call.emit('error', status);
      }
    };
    call.on('data', (message: ClientMessage) => {
      if (over) return;
      try {
        if (session === undefined) {
          if (message.message.case !== 'hello') throw fail.helloFirst();
          session = this.startSession(call, message.message.value);
          return;
        }
        this.onClientMessage(session, message);
        if (session.overflowed) this.overflow(session);
      } catch (err) {
        if (err instanceof SessionFailure) return failStream(err);
        // A bug of ours must cost this session only, never the broker and its other sessions.
        this.log.error({ err, session: session?.id }, 'unexpected failure handling a client message');
        failStream(fail.internal((err as Error).message));
      }
    });
    call.on('end', () => {
      // A reset stream ends its readable side too, and reports 'close' only after: the clean
      // half-close is the one that stays open, so it is told apart a moment later.
      setTimeout(() => {
        if (over) return;
        finish(false);
        call.end();
      }, HALF_CLOSE_SETTLE_MS);
    });
    // Anything but the client's own half-close is a broken stream, which the client may resume.
    call.on('cancelled', () => finish(true));
    call.on('error', () => finish(true));
    call.on('close', () => finish(true));
  }

  private startSession(call: SessionCall, hello: Hello): Session {
    if (this.closing) throw fail.shuttingDown();
    if (this.tokenDigests.length > 0 && !this.tokenDigests.some((d) => timingSafeEqual(d, digest(hello.authToken)))) throw fail.unauthenticated();
    const welcome = { ffiVersion: this.library.location.version, brokerVersion: this.version };
    if (hello.resumeToken !== '') {
      const session = [...this.sessions.values()].find((s) => s.resumeToken === hello.resumeToken);
      if (session === undefined) throw fail.unknownResume();
      clearTimeout(this.graceTimers.get(session));
      this.graceTimers.delete(session);
      session.resume(call, { ...welcome, resumed: true }, hello.lastSeq);
      session.log.info('session resumed');
      return session;
    }
    const bridges = new Set(bridgesFor(hello.sdk, hello.sdkVersion, this.library.location.version));
    const session = new Session(call, hello, this.log, this.options.sessionLimits, this.metrics, bridges);
    if (hello.lane !== undefined) this.grantLane(call, session, hello.lane);
    this.sessions.set(session.id, session);
    session.welcome({ ...welcome, resumed: false });
    session.log.info({ clientVersion: hello.clientVersion, sdk: hello.sdk, sdkVersion: hello.sdkVersion, bridges: [...bridges] }, 'session started');
    return session;
  }

  /** Gives the session its media lane, or says in its Welcome why it has none. */
  private grantLane(call: SessionCall, session: Session, asked: LaneRequest): void {
    const none = (unavailable: string) => {
      session.laneWelcome = create(MediaLaneSchema, { unavailable });
      session.log.info({ reason: unavailable }, 'media lane not granted; the session\'s media travel inline');
    };
    if (!this.options.mediaLane.enabled) return none('the broker runs with --media-lane off');
    // A remote worker could not open the broker's /proc paths; loopback TCP is this host too.
    if (!isLocalPeer(call.getPeer())) return none(`the worker (${call.getPeer()}) is not on the broker's host`);
    try {
      session.lane = new MediaLane(this.laneMemory, asked, this.options.mediaLane);
    } catch (err) {
      return none(`the broker could not create its regions: ${(err as Error).message}`);
    }
    session.laneWelcome = session.lane.describe();
  }

  /** Does what the session's SDK bridges call for after `event` was routed to it (sdk_bridges.ts). */
  private bridgeAfter(session: Session, event: RoutedEvent): void {
    // Every routed event passes here: a current SDK (no bridges) costs one check.
    if (session.bridges.size === 0) return;
    for (const handle of handlesDroppedAfter(session.bridges, event)) {
      if (!this.registry.owns(session, handle)) continue;
      this.registry.release(handle);
      this.library.dropHandle(handle);
    }
    for (const { bridge, bytes, roomHandle } of requestsAfter(session.bridges, event)) {
      const answered = this.library.request(bytes) !== null;
      if (answered) session.log.debug({ bridge, roomHandle: String(roomHandle) }, 'bridge request sent for the session');
      else session.log.warn({ bridge, roomHandle: String(roomHandle), why: SDK_BRIDGES.find((b) => b.name === bridge)?.why }, 'liblivekit_ffi refused the bridge request sent for the session');
    }
  }

  /** The stream broke: keep the session and its handles for the grace period. */
  private suspend(session: Session, call: SessionCall): void {
    session.detach();
    session.log.info({ graceMs: this.options.resumeGraceMs }, 'session stream broke; keeping its handles until it resumes or the grace period ends');
    const deadline = Date.now() + this.options.resumeGraceMs;
    const check = (): void => {
      if (workerGone(call, session)) session.log.info('worker process is gone; releasing its session');
      else if (Date.now() >= deadline) session.log.info('session not resumed within the grace period');
      else {
        this.graceTimers.set(session, setTimeout(check, Math.min(WORKER_POLL_MS, deadline - Date.now())));
        return;
      }
      this.release(session);
    };
    this.graceTimers.set(session, setTimeout(check, Math.min(WORKER_POLL_MS, this.options.resumeGraceMs)));
  }

  private onClientMessage(session: Session, message: ClientMessage): void {
    switch (message.message.case) {
      case 'hello':
        throw fail.helloTwice();
      case 'request': {
        const request = message.message.value;
        const started = process.hrtime.bigint();
        // Over its limits the session is answered without the request being looked at.
        const limit = this.sessionLimit(session);
        const { response, typeName } = limit === undefined ? this.executor.execute(session, request, session.lane) : { response: limit.toResponse(request.requestId), typeName: 'unknown' };
        this.metrics.requestDuration.observe({ kind: typeName }, Number(process.hrtime.bigint() - started) / 1e9);
        if (response.error !== undefined) {
          this.metrics.refused.inc({ code: Code[response.error.code] });
          session.log.warn({ request: typeName, code: Code[response.error.code], reason: response.error.message }, 'request refused');
        }
        session.respond(response);
        return;
      }
      case 'dropHandles':
        this.dropHandles(session, message.message.value);
        return;
      case 'batch':
        session.cork();
        try {
          for (const inner of message.message.value.messages) {
            if (inner.message.case !== 'request' && inner.message.case !== 'dropHandles') throw fail.badBatch(inner.message.case);
            this.onClientMessage(session, inner);
          }
        } finally {
          session.uncork();
        }
        return;
      default:
        throw fail.emptyMessage();
    }
  }

  /** A refusal when the session is over --max-handles or --max-request-rate. */
  private sessionLimit(session: Session): Refusal | undefined {
    if (this.options.maxRequestRate > 0 && !session.takeRequestToken(this.options.maxRequestRate)) return refuse.tooFast(this.options.maxRequestRate);
    if (this.registry.handlesOf(session).size >= this.options.maxHandles) return refuse.tooManyHandles(this.options.maxHandles);
    return undefined;
  }

  private dropHandles(session: Session, drop: DropHandles): void {
    const refused: bigint[] = [];
    for (const handle of drop.handles) {
      if (!this.registry.owns(session, handle)) {
        refused.push(handle);
        continue;
      }
      this.registry.release(handle);
      this.library.dropHandle(handle);
    }
    if (refused.length > 0) session.log.warn({ handles: refused.map(String) }, 'drop of handles the session does not own refused');
    if (drop.requestId === 0n) return;
    session.respond(refused.length > 0 ? refuse.dropNotOwned(refused).toResponse(drop.requestId) : create(ResponseSchema, { requestId: drop.requestId }));
  }

  /** Ends the session, disconnects its rooms and drops everything it owned; safe to call more than once. */
  private release(session: Session): void {
    if (!this.sessions.delete(session.id)) return;
    clearTimeout(this.graceTimers.get(session));
    this.graceTimers.delete(session);
    session.close();
    const { rooms, others } = this.registry.forget(session);
    session.log.info({ rooms: rooms.length, handles: rooms.length + others.length }, 'session ended');
    this.closer.close(rooms, others, session.log);
  }

  private overflow(session: Session): void {
    session.log.error({ hardCapBytes: this.options.sessionLimits.hardCapBytes }, 'session fell too far behind on what cannot be dropped; ending it');
    session.close({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: refuse.sessionOverflow(this.options.sessionLimits.hardCapBytes).message });
    this.release(session);
  }

  /** A library panic: the operator's log, and a notice to the session whose handles it names. */
  private onPanic(message: string, owner: Session | undefined): void {
    this.log.fatal({ panic: message, session: owner?.id }, 'liblivekit_ffi panicked');
    if (owner === undefined) return;
    owner.notice(create(NoticeSchema, { notice: { case: 'ffiPanic', value: { $typeName: 'livekit.ffi_broker.v1.FfiPanic', message } } }));
  }

  info(): InfoResponse {
    return create(InfoResponseSchema, {
      brokerVersion: this.version,
      ffiVersion: this.library.location.version,
      ffiLibrary: this.library.location.path,
      uptimeS: Number(process.hrtime.bigint() - this.startedAt) / 1e9,
      ownedHandles: BigInt(this.registry.handleCount),
      eventsTotal: this.pump.drained,
      sessions: [...this.sessions.values()].map((s) => ({
        sessionId: s.id,
        clientName: s.clientName,
        pid: s.pid,
        ownedHandles: BigInt(this.registry.handlesOf(s).size),
        queuedEvents: BigInt(s.queuedEvents),
        droppedEvents: s.droppedEvents,
        connected: s.connected,
        sdk: s.sdk,
        sdkVersion: s.sdkVersion,
        bridges: [...s.bridges],
      })),
    });
  }

  infoCall = (_call: ServerUnaryCall<InfoRequest, InfoResponse>, callback: sendUnaryData<InfoResponse>): void => {
    callback(null, this.info());
  };

  /**
   * Graceful shutdown: no new sessions, a ShuttingDown notice to every session, up to `timeoutMs`
   * for what is queued to reach the workers, then every session ended cleanly (its handles
   * dropped) and the library disposed of.
   */
  async shutdown(timeoutMs: number): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const notice = create(NoticeSchema, { notice: { case: 'shuttingDown', value: { $typeName: 'livekit.ffi_broker.v1.ShuttingDown', graceMs: timeoutMs } } });
    for (const session of this.sessions.values()) session.notice(notice);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && [...this.sessions.values()].some((s) => s.connected && !s.isDrained)) await new Promise((r) => setTimeout(r, 20));
    this.close();
  }

  /** Ends every session at once, disposes of the library (closing their rooms), then drops their handles. */
  close(): void {
    this.closing = true;
    for (const session of [...this.sessions.values()]) this.release(session);
    this.pump.stop();
    // Disposing closes every room the library still holds, those being disconnected included.
    this.library.dispose();
    this.closer.dropAll();
  }

  get isClosing(): boolean {
    return this.closing;
  }
}
