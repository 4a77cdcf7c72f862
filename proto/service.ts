// The FfiBroker gRPC service as @grpc/grpc-js sees it, built from the generated descriptors so
// that the server and every TypeScript client share one definition of paths and codecs.
import type { ServiceDefinition } from '@grpc/grpc-js';
import { fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import {
  ClientMessageSchema,
  InfoRequestSchema,
  InfoResponseSchema,
  ServerMessageSchema,
  type ClientMessage,
  type InfoRequest,
  type InfoResponse,
  type ServerMessage,
} from './gen/ffi_broker_pb.js';
import { decodeClientMessage } from './client_message_decoding.js';
import { encodeServerMessage } from './server_message_encoding.js';

interface Codec<T> {
  serialize(message: T): Buffer;
  deserialize(bytes: Buffer): T;
}

function codec<D extends DescMessage>(schema: D, own: Partial<Codec<MessageShape<D>>> = {}): Codec<MessageShape<D>> {
  return {
    serialize:
      own.serialize ??
      ((message) => {
        // A view, not Buffer.from(bytes), which would copy the whole message once more.
        const bytes = toBinary(schema, message);
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
      }),
    deserialize: own.deserialize ?? ((bytes) => fromBinary(schema, bytes)),
  };
}

// The media path's two directions by hand: every request a worker sends is read without
// reflection, every event and response written in one pass.
const clientMessage = codec(ClientMessageSchema, { deserialize: decodeClientMessage });
const serverMessage = codec(ServerMessageSchema, { serialize: encodeServerMessage });
const infoRequest = codec(InfoRequestSchema);
const infoResponse = codec(InfoResponseSchema);

export const SERVICE_NAME = 'livekit.ffi_broker.v1.FfiBroker';

export const FfiBrokerService = {
  session: {
    path: `/${SERVICE_NAME}/Session`,
    requestStream: true,
    responseStream: true,
    requestSerialize: clientMessage.serialize,
    requestDeserialize: clientMessage.deserialize,
    responseSerialize: serverMessage.serialize,
    responseDeserialize: serverMessage.deserialize,
  },
  info: {
    path: `/${SERVICE_NAME}/Info`,
    requestStream: false,
    responseStream: false,
    requestSerialize: infoRequest.serialize,
    requestDeserialize: infoRequest.deserialize,
    responseSerialize: infoResponse.serialize,
    responseDeserialize: infoResponse.deserialize,
  },
} satisfies ServiceDefinition<{
  session: import('@grpc/grpc-js').handleBidiStreamingCall<ClientMessage, ServerMessage>;
  info: import('@grpc/grpc-js').handleUnaryCall<InfoRequest, InfoResponse>;
}>;
