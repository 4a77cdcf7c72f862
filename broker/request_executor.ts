// One worker Request, start to finish, on the JS thread: decode, refuse what policy or ownership
// forbids, move pointer memory into native memory the broker owns, call liblivekit_ffi, and turn
// its answer into a contract Response. Running synchronously here is what orders a Response
// before any event that carries what it returned: the native queue is drained only afterwards.
import type { Buffer as WireBuffer, Request, Response } from '../proto/gen/ffi_broker_pb.js';
import { FFI_REQUEST, FFI_RESPONSE, fieldValue, planOf, selected, setFieldValue, walk, type SchemaMessage } from './livekit_schema.js';
import { decodeLivekit } from './livekit_decoding.js';
import { encodeLivekit } from './livekit_encoding.js';
import { withAsyncId } from './wire_patch.js';
import type { MediaLane } from './media_lane.js';
import { RequestMemory } from './request_memory.js';
import { valueVerdict } from './request_values.js';
import { FilterModules } from './filter_modules.js';
import { SoxFormats } from './sox_values.js';
import type { HostPolicy } from './host_policy.js';
import { kindVerdict, requestCarriesPointers } from './request_kinds.js';
import { Refusal, refuse } from './errors.js';
import { FREED_BY_REQUEST } from './handles_freed_by_library.js';
import type { HandleRegistry, Owner } from './handle_registry.js';
import type { FfiLibrary } from './native/ffi_library.js';
import type { NativeShim } from './native/shim.js';
import type { OutputMemory } from './output_memory.js';

export interface ExecutedRequest {
  response: Response;
  /** e.g. "CaptureAudioFrameRequest"; "unknown" when the bytes did not decode. */
  typeName: string;
}

export class RequestExecutor<O extends Owner> {
  /** Requests stopped just before the library because a pointer in them was not the broker's (lkb_unvalidated_pointers_total); must stay 0. */
  unvalidatedPointers = 0;
  private readonly filterModules: FilterModules<O>;
  private readonly soxFormats = new SoxFormats();

  constructor(
    private readonly library: FfiLibrary,
    private readonly shim: NativeShim,
    private readonly registry: HandleRegistry<O>,
    private readonly output: OutputMemory<O>,
    private readonly policy: HostPolicy,
    private readonly maxBufferBytes: number,
  ) {
    this.filterModules = new FilterModules((copy) => policy.pluginReleaseOf(copy));
  }

  /** `lane`: the owner's media lane, which its Buffers may refer to. */
  execute(owner: O, request: Request, lane?: MediaLane): ExecutedRequest {
    let typeName = 'unknown';
    const memory = new RequestMemory(this.shim, request.buffers, this.maxBufferBytes, lane);
    try {
      let message: SchemaMessage;
      try {
        message = decodeLivekit(FFI_REQUEST, request.ffiRequest);
      } catch (err) {
        throw refuse.undecodable((err as Error).message);
      }
      const chosen = selected(message);
      if (chosen === undefined) throw refuse.noMessage();
      typeName = chosen.typeName;
      const policyVerdict = kindVerdict(chosen.kind, typeName) ?? this.policy.check(chosen.kind, typeName, chosen.value, request.packageFiles);
      if (policyVerdict !== null) throw policyVerdict;
      this.filterModules.apply(owner, typeName, chosen.value);
      // Ownership before values: a handle of another session is PERMISSION_DENIED whatever else
      // the request says, so a session learns nothing about other sessions' handles from it.
      walk(chosen.value, {
        handleRef: (holder, field, handle) => {
          if (!this.registry.owns(owner, handle)) throw refuse.notOwned(holder.getType().typeName.replace('livekit.proto.', ''), field.name, handle);
        },
      });
      const valueProblem = valueVerdict(chosen.kind, typeName, chosen.value, this.maxBufferBytes);
      if (valueProblem !== null) throw valueProblem;
      if (chosen.kind === 'pushSoxResampler') {
        const pushProblem = this.soxFormats.pushProblem(chosen.value, this.maxBufferBytes);
        if (pushProblem !== undefined) throw refuse.unsendableOutput(typeName, pushProblem);
      }

      let clientAsyncId: bigint | undefined;
      walk(chosen.value, {
        asyncId: (holder, field, id) => {
          // Worker-chosen ids could collide with other sessions' or the library's own ids.
          clientAsyncId = id;
          setFieldValue(holder, field, this.registry.substituteAsyncId());
        },
        pointer: (holder, field, ptr) => memory.bind(holder, field, ptr),
      });

      if (requestCarriesPointers(chosen.kind)) {
        const foreign = memory.foreignPointer(message);
        if (foreign !== undefined) {
          this.unvalidatedPointers++;
          throw refuse.unvalidatedPointer(typeName, foreign);
        }
      }
      // Encoded from what was checked, not forwarded: the library sees exactly that, in canonical
      // form (one value per field, as the checks read it), and no unknown field.
      let bytes: Uint8Array;
      try {
        bytes = encodeLivekit(message);
      } catch (err) {
        throw refuse.incomplete(typeName, (err as Error).message);
      }
      const answer = this.library.request(bytes);
      this.forgetFreed(chosen.kind, chosen.value);
      if (answer === null) throw refuse.ffiFailed(typeName);
      return { typeName, response: this.answer(owner, request.requestId, answer, clientAsyncId, memory.written(), chosen.kind === 'newSoxResampler' ? chosen.value : undefined) };
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      return { typeName, response: err.toResponse(request.requestId) };
    } finally {
      memory.release();
    }
  }

  /** A request that frees a handle in the library did so once called, whatever it answered. */
  private forgetFreed(kind: string, value: SchemaMessage): void {
    const freed = FREED_BY_REQUEST.get(kind);
    const handle = freed === undefined ? undefined : value[freed.handle];
    if (typeof handle === 'bigint') this.registry.consume(handle, freed?.eventsUntil !== undefined);
  }

  private answer(owner: O, requestId: bigint, bytes: Buffer, clientAsyncId: bigint | undefined, written: WireBuffer[], soxRequest?: SchemaMessage): Response {
    const message = decodeLivekit(FFI_RESPONSE, bytes);
    const chosen = selected(message);
    // The sox resampler's format, to check its pushes (sox_values.ts).
    const soxHandle = soxRequest === undefined ? undefined : ((chosen?.value.message as { value?: { handle?: { id?: bigint } } } | undefined)?.value?.handle?.id);
    if (soxRequest !== undefined && soxHandle !== undefined) this.soxFormats.remember(soxHandle, soxRequest, (h) => this.registry.isOwned(h));
    let ffiResponse: Uint8Array = bytes;
    if (chosen !== undefined) {
      const asyncId = planOf(chosen.value.getType()).asyncId;
      const id = asyncId === undefined ? undefined : fieldValue(chosen.value, asyncId);
      if (typeof id === 'bigint') {
        this.registry.expectAsync(owner, id, clientAsyncId ?? id);
        // The worker's own id back in place of the broker's, the rest as the library wrote it.
        if (clientAsyncId !== undefined && clientAsyncId !== id) ffiResponse = withAsyncId(bytes, chosen.no, asyncId!.no, clientAsyncId);
      }
    }
    const buffers = chosen === undefined ? written : [...written, ...this.output.take(chosen.value, owner)];
    // A literal: create() would initialize it by reflection, on every request.
    return { $typeName: 'livekit.ffi_broker.v1.Response', requestId, ffiResponse, buffers };
  }
}
