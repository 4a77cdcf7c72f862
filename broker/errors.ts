// Every refusal the broker gives a worker, with its contract code and a message that says what was
// wrong and what to do. One place, so codes and wording stay consistent across the daemon.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { Error_Code as Code, ResponseSchema, type Response } from '../proto/gen/ffi_broker_pb.js';

export { Code };

/** A contract error, answered in a Response; the session goes on. */
export class Refusal extends Error {
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(message);
    this.name = 'Refusal';
  }

  /** The Response that answers request `requestId` with this refusal. */
  toResponse(requestId: bigint): Response {
    return create(ResponseSchema, { requestId, error: { code: this.code, message: this.message } });
  }
}

/** A protocol violation, answered by ending the Session stream with a gRPC status. */
export class SessionFailure extends Error {
  constructor(
    readonly status: GrpcStatus,
    message: string,
  ) {
    super(message);
    this.name = 'SessionFailure';
  }
}

const hex = (v: bigint) => `${v} (0x${v.toString(16)})`;

export const refuse = {
  undecodable: (detail: string) =>
    new Refusal(Code.INVALID_REQUEST, `ffi_request does not decode as livekit.proto.FfiRequest (${detail}); send the bytes of one FfiRequest`),
  incomplete: (kind: string, detail: string) =>
    new Refusal(Code.INVALID_REQUEST, `${kind} is incomplete (${detail}); set every required field of the livekit schema`),
  noMessage: () => new Refusal(Code.INVALID_REQUEST, 'ffi_request has no request set in its oneof; set exactly one request'),
  notOwned: (kind: string, field: string, handle: bigint) =>
    new Refusal(Code.PERMISSION_DENIED, `${kind}.${field} = ${handle} names a handle this session does not own; use handles returned to this session`),
  dropNotOwned: (handles: bigint[]) =>
    new Refusal(Code.PERMISSION_DENIED, `handles ${handles.join(', ')} are not owned by this session; they were not dropped (the owned ones in the same call were)`),
  hostPolicy: (kind: string, reason: string, flag: string) =>
    new Refusal(Code.PERMISSION_DENIED, `${kind} ${reason}; the broker allows this only when started with ${flag}`),
  packageNotInstalled: (kind: string, distribution: string, version: string, available: string[] | undefined) =>
    new Refusal(
      Code.PERMISSION_DENIED,
      `${kind} needs ${distribution} ${version}, which this broker does not have (${available === undefined ? 'it runs without --allow-audio-plugins DIR' : `its --allow-audio-plugins DIR holds ${available.length > 0 ? available.join(', ') : 'no package'}`}); install that release for the broker: scripts/install-audio-plugins.sh DIR ${distribution}==${version} and start it with --allow-audio-plugins DIR, or build its image with --build-arg AUDIO_PLUGINS="${distribution}==${version}"`,
    ),
  undescribedPackageFile: (kind: string, field: string, named: string) =>
    new Refusal(
      Code.PERMISSION_DENIED,
      `${kind}.${field} names ${named}, which Request.package_files does not describe; the broker opens only its own copies (--allow-audio-plugins DIR) of files named by distribution, version and path inside it, never a worker's path (the Python client describes files of installed distributions; a file of none, e.g. LK_NC_PLUGIN_PATH, cannot be served)`,
    ),
  packageFileOutside: (kind: string, distribution: string, version: string, file: string, root: string) =>
    new Refusal(Code.PERMISSION_DENIED, `${kind}: file "${file}" of ${distribution} ${version} resolves outside the broker's copy ${root} (symlinks and .. resolved); name a file inside the package`),
  packageFileMissing: (kind: string, distribution: string, version: string, file: string, root: string) =>
    new Refusal(
      Code.PERMISSION_DENIED,
      `${kind}: the broker's copy of ${distribution} ${version} (${root}) has no file "${file}"; the worker's release differs from the broker's, or the copy is damaged: reinstall it with scripts/install-audio-plugins.sh`,
    ),
  notJson: (kind: string, field: string, detail: string) =>
    new Refusal(Code.INVALID_REQUEST, `${kind}.${field} is not a JSON document (${detail}); the broker maps the paths in it to its own copies, so it must parse`),
  unsafeValues: (kind: string, problem: string) =>
    new Refusal(Code.INVALID_REQUEST, `${kind}: ${problem}; liblivekit_ffi would abort on it, so the request was not sent`),
  dispose: () =>
    new Refusal(Code.PERMISSION_DENIED, 'DisposeRequest would tear down every session\'s rooms; close the session (or drop your handles) instead'),
  unsupportedPointer: (kind: string, field: string) =>
    new Refusal(Code.INVALID_REQUEST, `${kind} carries the pointer field ${field}, which this broker version does not carry across the process boundary; the request was not sent to the library`),
  missingBuffer: (kind: string, field: string, ptr: bigint) =>
    new Refusal(Code.INVALID_REQUEST, `${kind}: ${field} = ${hex(ptr)} has no Buffer with that ptr; send the memory it points at as Request.buffers {ptr, data}`),
  shortBuffer: (kind: string, field: string, ptr: bigint, need: number, got: number) =>
    new Refusal(Code.INVALID_REQUEST, `${kind}: the Buffer for ${field} = ${hex(ptr)} has ${got} bytes, the message implies ${need}`),
  noLane: (kind: string) =>
    new Refusal(Code.INVALID_REQUEST, `${kind}: a Buffer refers to the media lane, and this session has none (its Hello did not ask for one, or the broker did not grant it: see Welcome.lane); send the bytes inline in Buffer.data`),
  laneAndData: (kind: string, ptr: bigint) =>
    new Refusal(Code.INVALID_REQUEST, `${kind}: the Buffer for ${hex(ptr)} has both inline data and a lane reference; set one`),
  laneRegionNotOwned: (kind: string, region: number, own: number) =>
    new Refusal(Code.PERMISSION_DENIED, `${kind}: a Buffer refers to lane region ${region}, which is not this session's to_broker region (${own}); refer only to the regions of this session's Welcome.lane`),
  laneOutOfBounds: (kind: string, offset: bigint, length: bigint, size: number) =>
    new Refusal(Code.INVALID_REQUEST, `${kind}: a Buffer's lane reference (offset ${offset}, length ${length}) reaches past the end of its ${size}-byte region; refer to bytes inside it`),
  oversizedBuffer: (kind: string, field: string, need: number, limit: number) =>
    new Refusal(Code.INVALID_REQUEST, `${kind}: ${field} implies ${need} bytes, over the ${limit}-byte message limit; check the frame's dimensions`),
  unsendableOutput: (kind: string, detail: string) =>
    new Refusal(Code.INVALID_REQUEST, `${kind}: ${detail}; the request was not sent to the library`),
  badVideoBuffer: (kind: string, detail: string) =>
    new Refusal(Code.INVALID_REQUEST, `${kind}: ${detail}; the request was not sent to the library`),
  ffiFailed: (kind: string) =>
    new Refusal(Code.FFI_ERROR, `liblivekit_ffi refused ${kind} (it returned no response); check the request's fields and the broker log`),
  sessionOverflow: (hardCapBytes: number) =>
    new Refusal(Code.RESOURCE_EXHAUSTED, `the session fell more than ${hardCapBytes} bytes behind on what cannot be dropped (responses, notices, events other than media frames); its handles were released. Read the stream faster or raise --session-buffer`),
  tooManyHandles: (limit: number) =>
    new Refusal(Code.RESOURCE_EXHAUSTED, `this session owns ${limit} handles, the broker's --max-handles; drop handles it no longer needs`),
  tooFast: (rate: number) => new Refusal(Code.RESOURCE_EXHAUSTED, `this session sent more than ${rate} requests per second, the broker's --max-request-rate; slow down`),
  shuttingDown: () => new Refusal(Code.UNAVAILABLE, 'the broker is shutting down; reconnect to its successor'),
  unvalidatedPointer: (kind: string, problem: string) =>
    new Refusal(Code.CODE_UNSPECIFIED, `internal error of the broker: ${kind} was about to reach liblivekit_ffi with ${problem}; the request was not sent (a broker bug: please report it with the broker log)`),
} as const;

export const fail = {
  helloFirst: () => new SessionFailure(GrpcStatus.FAILED_PRECONDITION, 'the first ClientMessage of a Session must be hello'),
  helloTwice: () => new SessionFailure(GrpcStatus.FAILED_PRECONDITION, 'hello was already sent on this Session; open a new Session instead'),
  badBatch: (inner: string | undefined) =>
    new SessionFailure(GrpcStatus.INVALID_ARGUMENT, `a ClientBatch holds only request and drop_handles messages, not ${inner ?? 'an empty message'}; send hello alone, and never nest batches`),
  emptyMessage: () => new SessionFailure(GrpcStatus.INVALID_ARGUMENT, 'ClientMessage has no message set; send hello, request or drop_handles'),
  unauthenticated: () =>
    new SessionFailure(GrpcStatus.UNAUTHENTICATED, 'Hello.auth_token is not one this broker accepts; use a token from the broker\'s --auth-token-file'),
  unknownResume: () =>
    new SessionFailure(GrpcStatus.NOT_FOUND, 'resume_token names no session this broker keeps; connect without resume_token for a new session'),
  shuttingDown: () => new SessionFailure(GrpcStatus.UNAVAILABLE, 'the broker is shutting down; reconnect to its successor'),
  internal: (detail: string) => new SessionFailure(GrpcStatus.INTERNAL, `the broker failed on a message of this session (${detail}); the session was ended and its handles dropped`),
} as const;
