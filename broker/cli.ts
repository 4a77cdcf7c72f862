#!/usr/bin/env node
// livekit-ffi-broker serve | info
import { Command, Option } from 'commander';
import { toJson } from '@bufbuild/protobuf';
import { DEFAULT_ADDRESS } from '../client/address.js';
import { BrokerClient } from '../client/broker_client.js';
import { InfoResponseSchema, type InfoResponse } from '../proto/gen/ffi_broker_pb.js';
import { Broker } from './broker.js';
import { ConfigError, DEFAULTS, resolveServeConfig, type RawServeOptions } from './config.js';
import { createLogger, LOG_LEVELS } from './logger.js';
import { packageVersion } from './paths.js';
import { BrokerServer } from './server.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

async function serve(raw: RawServeOptions): Promise<void> {
  let config;
  try {
    config = resolveServeConfig(raw);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`livekit-ffi-broker: ${err.message}\n`);
    process.exit(2);
  }
  const log = createLogger(config.logLevel);
  const broker = new Broker(config, log);
  const server = new BrokerServer(broker, { listen: config.listen, maxMessageBytes: config.maxMessageBytes, socketMode: config.socketMode }, log);
  try {
    await server.start();
  } catch (err) {
    log.fatal({ err }, (err as Error).message);
    broker.close();
    await server.stop(0);
    process.exit(1);
  }
  const metricsServer = config.metricsListen && (await broker.metrics.listen(config.metricsListen.host, config.metricsListen.port, log).catch((err: Error) => {
    log.fatal(err.message);
    process.exit(1);
  }));
  server.setServing(true);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, 'shutting down');
    server.setServing(false);
    await broker.shutdown(config.shutdownTimeoutMs);
    await server.stop(config.shutdownTimeoutMs);
    metricsServer?.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

function printInfo(info: InfoResponse): void {
  const lines = [
    `broker ${info.brokerVersion}  liblivekit_ffi ${info.ffiVersion}  up ${info.uptimeS.toFixed(1)} s`,
    `library ${info.ffiLibrary}`,
    `owned handles ${info.ownedHandles}  events taken ${info.eventsTotal}  sessions ${info.sessions.length}`,
  ];
  for (const s of info.sessions) {
    lines.push(
      `  ${s.sessionId}  ${s.clientName || '-'} pid ${s.pid}  handles ${s.ownedHandles}  queued ${s.queuedEvents}  dropped ${s.droppedEvents}${s.connected ? '' : '  (waiting for resume)'}`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
}

const program = new Command('livekit-ffi-broker')
  .description('Owns liblivekit_ffi for every worker process on this host and serves it over gRPC.')
  .version(packageVersion);

program
  .command('serve')
  .description('Load liblivekit_ffi and serve worker sessions.')
  .option('--listen <address>', `unix:///PATH or HOST:PORT (TCP host defaults to 127.0.0.1); repeatable (default: ${DEFAULT_ADDRESS})`, collect)
  .option('--ffi-lib <path>', 'liblivekit_ffi to load (env LIVEKIT_LIB_PATH; default: the binary of the pinned npm package)')
  .addOption(new Option('--log-level <level>', `log level (default: ${DEFAULTS.logLevel})`).choices([...LOG_LEVELS]))
  .option('--max-message-size <bytes>', 'largest message a worker may send, e.g. 65536, 64k, 64MiB (default: 64MiB)')
  .option('--socket-mode <octal>', 'file mode of Unix sockets (default: 660)')
  .option('--shutdown-timeout <ms>', `how long SIGTERM waits for sessions to close (default: ${DEFAULTS.shutdownTimeoutMs})`)
  .option('--session-buffer <bytes>', `undelivered bytes per session past which media frames are dropped, oldest first; 4x this of other events ends the session (default: 16MiB)`)
  .option('--resume-grace <ms>', `how long a session whose stream broke keeps its handles for a resume (default: ${DEFAULTS.resumeGraceMs}; 0: release at once)`)
  .option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (default: off)')
  .option('--allow-audio-plugins <dir>', 'let workers load audio filter plugins from inside DIR (default: refused)')
  .option('--shared-dir <dir>', 'let workers have the library read and write files inside DIR (default: refused)')
  .option('--allow-platform-audio', "let workers open the host's audio devices (default: refused)")
  .action((opts: RawServeOptions) => serve(opts));

program
  .command('info')
  .description("Print the broker's identity, versions, sessions and owned handles (the Info RPC).")
  .option('--address <address>', 'broker address', process.env.LIVEKIT_FFI_BROKER || DEFAULT_ADDRESS)
  .option('--json', 'print JSON')
  .action(async (opts: { address: string; json?: boolean }) => {
    try {
      const info = await BrokerClient.info(opts.address);
      if (opts.json) process.stdout.write(JSON.stringify(toJson(InfoResponseSchema, info, { alwaysEmitImplicit: true })) + '\n');
      else printInfo(info);
    } catch (err) {
      process.stderr.write(`livekit-ffi-broker info: ${(err as Error).message} (is a broker listening on ${opts.address}?)\n`);
      process.exit(1);
    }
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`livekit-ffi-broker: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
