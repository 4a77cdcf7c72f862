// The gRPC server: FfiBroker on every --listen address (Unix sockets and TCP), with the standard
// grpc.health.v1.Health service (SERVING once the library is initialized, NOT_SERVING while
// shutting down) and server reflection, so grpcurl and health probes work without our proto.
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { Logger } from 'pino';
import { parseAddress, type BrokerAddress } from '../client/address.js';
import { FfiBrokerService, SERVICE_NAME } from '../proto/service.js';
import { packageRoot } from './paths.js';
import type { Broker } from './broker.js';
import type { SessionCall } from './session.js';
import { claimSocketPath, removeSocketFile } from './unix_socket.js';
import type { TlsFiles } from './config.js';

export interface ServerOptions {
  listen: string[];
  maxMessageBytes: number;
  socketMode: number;
  socketGid: number | undefined;
  /** For TCP listeners; Unix sockets are guarded by their file mode and group instead. */
  tls: TlsFiles | undefined;
}

export class BrokerServer {
  private readonly server: grpc.Server;
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
  private readonly socketPaths: string[] = [];
  /** The addresses bound, with TCP port 0 replaced by the port chosen. */
  readonly bound: string[] = [];

  constructor(
    broker: Broker,
    private readonly options: ServerOptions,
    private readonly log: Logger,
  ) {
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': options.maxMessageBytes,
      'grpc.max_send_message_length': -1,
    });
    const handlers: grpc.UntypedServiceImplementation = {
      session: (call: SessionCall) => broker.openSession(call),
      info: broker.infoCall,
    };
    this.server.addService(FfiBrokerService, handlers);
    this.health.addToServer(this.server);
    new ReflectionService(loadSync(path.join(packageRoot, 'proto', 'ffi_broker.proto'))).addToServer(this.server);
  }

  async start(): Promise<void> {
    for (const text of this.options.listen) await this.bind(parseAddress(text));
  }

  private async bind(address: BrokerAddress): Promise<void> {
    if (address.kind === 'unix') await claimSocketPath(address.path);
    const tls = this.options.tls;
    const credentials =
      address.kind === 'tcp' && tls !== undefined
        ? grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCa !== undefined)
        : grpc.ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(address.target, credentials, (err, p) => (err ? reject(new Error(`cannot listen on ${address.target}: ${err.message}`)) : resolve(p))),
    );
    if (address.kind === 'unix') {
      fs.chmodSync(address.path, this.options.socketMode);
      if (this.options.socketGid !== undefined) fs.chownSync(address.path, -1, this.options.socketGid);
      this.socketPaths.push(address.path);
      this.bound.push(`unix://${address.path}`);
    } else {
      this.bound.push(`${address.host}:${port}`);
    }
    this.log.info({ address: this.bound[this.bound.length - 1], tls: address.kind === 'tcp' && tls !== undefined }, 'listening');
  }

  /** The health of the server and of FfiBroker, as probes see it. */
  setServing(serving: boolean): void {
    const status: ServingStatus = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', status);
    this.health.setStatus(SERVICE_NAME, status);
  }

  /** Stops accepting, waits up to `graceMs` for calls to finish, then removes the socket files. */
  async stop(graceMs: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    for (const path of this.socketPaths) removeSocketFile(path);
  }
}
