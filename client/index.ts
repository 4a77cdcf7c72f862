// Public API of the worker-side client. Nothing here loads native code.
export {
  ADDRESS_ENV,
  BrokerClient,
  CHANNEL_OPTIONS,
  type BrokerClientEvents,
  type BrokerEvent,
  type ConnectOptions,
  type InfoOptions,
  type PackageFileInit,
  type RequestResult,
} from './broker_client.js';
export { BrokerError, Error_Code, errorCodeName } from './broker_error.js';
export { allocatePointer, audioBuffer, audioSamples, bufferAt, dataBuffer, type AudioBufferInfoLike, type BufferMap } from './media.js';
export { packedBytesPerPixel, videoFrameBuffer, videoPlaneLayout, videoPlanes, VideoBufferType, type VideoBufferInfoLike, type VideoFrameBuffer, type VideoFrameOptions, type VideoPlane, type VideoPlaneLayout } from './video.js';
export { DEFAULT_ADDRESS, parseAddress, type BrokerAddress } from './address.js';
export type {
  EventsDropped,
  FfiPanic,
  InfoResponse,
  Notice,
  SessionInfo,
  ShuttingDown,
} from '../proto/gen/ffi_broker_pb.js';
