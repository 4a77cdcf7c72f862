#!/usr/bin/env node
// livekit-ffi-broker serve | info
import { Command } from 'commander';
import { toJson } from '@bufbuild/protobuf';
import { DEFAULT_ADDRESS } from '../client/address.js';
import { BrokerClient } from '../client/broker_client.js';
import { InfoResponseSchema, type InfoResponse } from '../proto/gen/ffi_broker_pb.js';
import { Broker } from './broker.js';
import { ConfigError, ENV_PREFIX, SETTINGS, envName, resolveServeConfig } from './config.js';
import { createLogger } from './logger.js';
import { packageVersion } from './paths.js';
import { BrokerServer } from './server.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

async function serve(flags: Record<string, string | boolean | string[] | undefined>): Promise<void> {
  let config;
  try {
    config = resolveServeConfig(flags);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`livekit-ffi-broker: ${err.message}\n`);
    process.exit(2);
  }
  const log = createLogger(config.logLevel, config.logPretty);
  const broker = new Broker(config, log);
  const server = new BrokerServer(broker, config, log);
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
      `  ${s.sessionId}  ${s.clientName || '-'} pid ${s.pid}  handles ${s.ownedHandles}  queued ${s.queuedEvents}  dropped ${s.droppedEvents}` +
        `${s.sdk ? `  sdk ${s.sdk} ${s.sdkVersion}` : ''}${s.bridges.length > 0 ? `  bridges ${s.bridges.join(',')}` : ''}${s.connected ? '' : '  (waiting for resume)'}`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
}

const program = new Command('livekit-ffi-broker')
  .description('Owns liblivekit_ffi for every worker process on this host and serves it over gRPC.')
  .version(packageVersion);

const serveCommand = program
  .command('serve')
  .description(
    `Load liblivekit_ffi and serve worker sessions. Each setting may also come from the environment (${ENV_PREFIX}<NAME>, e.g. ${envName('session-buffer')}) ` +
      'or from --config FILE (JSON, keys named like the flags); a flag wins over the environment, which wins over the file.',
  )
  .option('--config <file>', 'JSON file of settings');
for (const setting of SETTINGS) {
  const help = setting.defaultText === undefined ? setting.help : `${setting.help} (default: ${setting.defaultText})`;
  // `--flag` alone is on; `--flag off` turns off a setting that is on by default.
  if (setting.kind === 'bool') serveCommand.option(`--${setting.flag} [on|off]`, help);
  else if (setting.kind === 'addresses' || setting.kind === 'files') serveCommand.option(`--${setting.flag} <value>`, help, collect);
  else serveCommand.option(`--${setting.flag} <value>`, help);
}
serveCommand.action((opts: Record<string, string | boolean | string[] | undefined>) => {
  // commander names options in camelCase; the settings table uses the flags' own names.
  const flags = Object.fromEntries(Object.entries(opts).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v]));
  return serve(flags);
});

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
