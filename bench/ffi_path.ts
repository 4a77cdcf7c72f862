// The two ways a Node process reaches liblivekit_ffi, behind one interface, so that every scenario
// runs the same workload code on both and the difference is the path alone:
//  - `broker`: this project's TypeScript client, over a Session stream to a broker process;
//  - `in-process`: @livekit/rtc-ffi-bindings' Node-API module in this process (the anchor: what the
//    LiveKit Node SDK does), its events delivered by napi-rs's thread-safe function.
import type { BrokerClient, ConnectOptions } from '../client/broker_client.js';
import { bufferAt, dataBuffer, type BufferMap } from '../client/media.js';
import { FfiEvent, FfiRequest, FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';

export type PathKind = 'broker' | 'in-process';
export type FfiMessage = FfiRequest['message'];

/** Memory an event's pointer fields point at. */
export interface EventMemory {
  read(ptr: bigint, byteLength: number): Uint8Array;
}

export interface FfiPath {
  readonly kind: PathKind;
  /**
   * A pointer value for `bytes`, to write into a pointer field of the next request, with the buffer
   * list that request must carry. The caller keeps `bytes` alive until the request is answered.
   */
  memory(bytes: Uint8Array): { ptr: bigint; buffers: [bigint, Uint8Array][] };
  call(message: FfiMessage, buffers?: [bigint, Uint8Array][]): Promise<FfiResponse['message']>;
  onEvent(handler: (event: FfiEvent, memory: EventMemory) => void): void;
  /**
   * Frees a memory-only handle an event carried (OwnedAudioFrameBuffer and the like): the broker
   * drops those itself once it has copied the bytes; in-process the application must.
   */
  releaseEventMemory(handle: bigint | undefined): void;
  /** Releases a handle the path's owner holds (e.g. a resampler). */
  drop(handle: bigint): Promise<void>;
  close(): Promise<void>;
}

class BrokerPath implements FfiPath {
  readonly kind = 'broker';

  constructor(readonly client: BrokerClient) {}

  memory(bytes: Uint8Array) {
    const buffer = dataBuffer(bytes);
    return { ptr: buffer[0], buffers: [buffer] };
  }

  async call(message: FfiMessage, buffers?: [bigint, Uint8Array][]) {
    return (await this.client.request(new FfiRequest({ message }), buffers)).response.message;
  }

  onEvent(handler: (event: FfiEvent, memory: EventMemory) => void): void {
    this.client.on('event', ({ event, buffers }) => handler(event, mapMemory(buffers)));
  }

  releaseEventMemory(): void {}

  drop(handle: bigint): Promise<void> {
    return this.client.dropHandles([handle]);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

const mapMemory = (buffers: BufferMap): EventMemory => ({ read: (ptr, len) => bufferAt(buffers, ptr, len) });

export async function brokerPath(address: string, options: ConnectOptions = {}): Promise<FfiPath> {
  // Loaded lazily, as the Node-API module is: an in-process worker (the workers scenario) never
  // loads gRPC and the contract (about 10 MiB of PSS per process).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { BrokerClient: Client } = require('../client/broker_client.js') as typeof import('../client/broker_client.js');
  return new BrokerPath(await Client.connect(address, options));
}

type NapiModule = typeof import('@livekit/rtc-ffi-bindings/native.js');

/** The Node-API module allows one initialization per process, so one path object serves all users. */
class InProcessPath implements FfiPath {
  readonly kind = 'in-process';
  private readonly handlers: ((event: FfiEvent, memory: EventMemory) => void)[] = [];
  private readonly memoryView: EventMemory;

  constructor(private readonly napi: NapiModule) {
    // As the LiveKit Node SDK does: copy pointed-at memory out with livekitCopyBuffer.
    this.memoryView = { read: (ptr, len) => napi.livekitCopyBuffer(ptr, len) };
    napi.livekitInitialize(
      (data) => {
        const event = FfiEvent.fromBinary(data);
        for (const handler of this.handlers) handler(event, this.memoryView);
      },
      false,
      'livekit-ffi-broker-bench',
    );
  }

  memory(bytes: Uint8Array) {
    return { ptr: this.napi.livekitRetrievePtr(bytes), buffers: [] };
  }

  async call(message: FfiMessage) {
    return FfiResponse.fromBinary(this.napi.livekitFfiRequest(new FfiRequest({ message }).toBinary())).message;
  }

  onEvent(handler: (event: FfiEvent, memory: EventMemory) => void): void {
    this.handlers.push(handler);
  }

  releaseEventMemory(handle: bigint | undefined): void {
    if (handle !== undefined) new this.napi.FfiHandle(handle).dispose();
  }

  async drop(handle: bigint): Promise<void> {
    new this.napi.FfiHandle(handle).dispose();
  }

  async close(): Promise<void> {
    this.handlers.length = 0;
  }
}

let inProcess: InProcessPath | undefined;

/** The in-process anchor; loads liblivekit_ffi into this process on first use. */
export function inProcessPath(): FfiPath {
  // Loaded lazily so that broker-only runs never map the library into the bench process.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  inProcess ??= new InProcessPath(require('@livekit/rtc-ffi-bindings/native.js') as NapiModule);
  return inProcess;
}
