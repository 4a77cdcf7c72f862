// A Session stream without BrokerClient's rules, so a test can send messages out of order, or
// shapes the client never sends, and see every ServerMessage as it came.
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { parseAddress } from '../../client/address.js';
import { ClientMessageSchema, HelloSchema, type ClientMessage, type ServerMessage } from '../../proto/gen/ffi_broker_pb.js';
import { FfiBrokerService } from '../../proto/service.js';
import { waitFor, withTimeout } from './processes.js';

export function rawSession(address: string) {
  const grpcClient = new grpc.Client(parseAddress(address).target, grpc.credentials.createInsecure());
  const call: grpc.ClientDuplexStream<ClientMessage, ServerMessage> = grpcClient.makeBidiStreamRequest(
    FfiBrokerService.session.path,
    FfiBrokerService.session.requestSerialize,
    FfiBrokerService.session.responseDeserialize,
  );
  const received: ServerMessage[] = [];
  call.on('data', (message: ServerMessage) => received.push(message));
  call.on('error', () => {}); // reported again as 'status'
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  const send = (message: ClientMessage['message']) => call.write(create(ClientMessageSchema, { message }));
  return {
    received,
    send,
    hello: (clientName = 'raw', init: MessageInitShape<typeof HelloSchema> = {}) => send({ case: 'hello', value: create(HelloSchema, { clientName, pid: process.pid, ...init }) }),
    /** The status the broker ended the stream with. */
    status: (timeoutMs = 10000) => withTimeout(status, timeoutMs, `the broker did not end the stream within ${timeoutMs} ms`),
    welcome: async () => {
      await waitFor(() => received.some((m) => m.message.case === 'welcome'), 5000, 'Welcome');
      const welcome = received.find((m) => m.message.case === 'welcome')!.message;
      return welcome.case === 'welcome' ? welcome.value : assert.fail('no Welcome');
    },
    close: () => {
      call.cancel();
      grpcClient.close();
    },
  };
}
