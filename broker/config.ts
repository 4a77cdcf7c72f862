// The daemon's settings, their defaults and their validation. Every error names the setting, what
// was given and what is allowed, and is raised before anything starts.
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_ADDRESS, parseAddress } from '../client/address.js';
import { LOG_LEVELS, type LogLevel } from './logger.js';
import type { SessionLimits } from './session.js';

export interface ServeConfig {
  listen: string[];
  ffiLib: string | undefined;
  logLevel: LogLevel;
  maxMessageBytes: number;
  socketMode: number;
  shutdownTimeoutMs: number;
  audioPluginDir: string | undefined;
  sharedDir: string | undefined;
  allowPlatformAudio: boolean;
  sessionLimits: SessionLimits;
  resumeGraceMs: number;
  /** Where /metrics is served (TCP); off when undefined. */
  metricsListen: { host: string; port: number } | undefined;
}

export const DEFAULTS: ServeConfig = {
  listen: [DEFAULT_ADDRESS],
  ffiLib: undefined,
  logLevel: 'info',
  // A 4K RGBA frame is 33 MB; 64 MiB leaves room for one with its message.
  maxMessageBytes: 64 * 1024 * 1024,
  socketMode: 0o660,
  shutdownTimeoutMs: 5000,
  audioPluginDir: undefined,
  sharedDir: undefined,
  allowPlatformAudio: false,
  // ~2 s of 20 audio streams, or 5 frames of 1080p I420 video.
  sessionLimits: { bufferBytes: 16 * 1024 * 1024, hardCapBytes: 64 * 1024 * 1024 },
  resumeGraceMs: 10_000,
  metricsListen: undefined,
};

// What cannot be dropped may use this many times the session buffer before the session fails.
const HARD_CAP_FACTOR = 4;

const sessionLimits = (bufferBytes: number): SessionLimits => ({ bufferBytes, hardCapBytes: bufferBytes * HARD_CAP_FACTOR });

export class ConfigError extends Error {
  constructor(setting: string, given: unknown, allowed: string) {
    super(`invalid ${setting} ${JSON.stringify(given)}: ${allowed}`);
    this.name = 'ConfigError';
  }
}

export interface RawServeOptions {
  listen?: string[];
  ffiLib?: string;
  logLevel?: string;
  maxMessageSize?: string;
  socketMode?: string;
  shutdownTimeout?: string;
  allowAudioPlugins?: string;
  sharedDir?: string;
  allowPlatformAudio?: boolean;
  sessionBuffer?: string;
  resumeGrace?: string;
  metricsListen?: string;
}

function directory(setting: string, given: string | undefined): string | undefined {
  if (given === undefined) return undefined;
  let stat: fs.Stats;
  try {
    stat = fs.statSync(given);
  } catch {
    throw new ConfigError(setting, given, 'an existing directory');
  }
  if (!stat.isDirectory()) throw new ConfigError(setting, given, 'an existing directory');
  return path.resolve(given);
}

const UNITS: Record<string, number> = { '': 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3 };

/** Bytes, with an optional binary unit: 65536, 64k, 16MiB. */
function byteSize(setting: string, text: string, min: number): number {
  const match = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match === null ? undefined : UNITS[match[2]!.toLowerCase()];
  if (match === null || unit === undefined || Number(match[1]) * unit < min) throw new ConfigError(setting, text, `a size of at least ${min} bytes, e.g. 65536, 64k or 16MiB`);
  return Number(match[1]) * unit;
}

function tcpAddress(setting: string, text: string): { host: string; port: number } {
  let address;
  try {
    address = parseAddress(text);
  } catch (err) {
    throw new ConfigError(setting, text, (err as Error).message);
  }
  if (address.kind !== 'tcp') throw new ConfigError(setting, text, 'HOST:PORT or :PORT (TCP)');
  return { host: address.host, port: address.port };
}

function positiveInt(setting: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(setting, text, `a whole number >= ${min}`);
  return n;
}

export function resolveServeConfig(raw: RawServeOptions, env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const listen = raw.listen && raw.listen.length > 0 ? raw.listen : DEFAULTS.listen;
  for (const address of listen) {
    try {
      parseAddress(address);
    } catch (err) {
      throw new ConfigError('--listen', address, (err as Error).message);
    }
  }
  const logLevel = (raw.logLevel ?? DEFAULTS.logLevel) as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('--log-level', raw.logLevel, `one of ${LOG_LEVELS.join(', ')}`);
  let socketMode = DEFAULTS.socketMode;
  if (raw.socketMode !== undefined) {
    if (!/^0?[0-7]{3}$/.test(raw.socketMode)) throw new ConfigError('--socket-mode', raw.socketMode, 'an octal file mode such as 660');
    socketMode = parseInt(raw.socketMode, 8);
  }
  return {
    listen,
    ffiLib: raw.ffiLib ?? (env.LIVEKIT_LIB_PATH || undefined),
    logLevel,
    maxMessageBytes: raw.maxMessageSize === undefined ? DEFAULTS.maxMessageBytes : byteSize('--max-message-size', raw.maxMessageSize, 1024),
    socketMode,
    shutdownTimeoutMs: raw.shutdownTimeout === undefined ? DEFAULTS.shutdownTimeoutMs : positiveInt('--shutdown-timeout', raw.shutdownTimeout, 0),
    audioPluginDir: directory('--allow-audio-plugins', raw.allowAudioPlugins),
    sharedDir: directory('--shared-dir', raw.sharedDir),
    allowPlatformAudio: raw.allowPlatformAudio === true,
    sessionLimits: raw.sessionBuffer === undefined ? DEFAULTS.sessionLimits : sessionLimits(byteSize('--session-buffer', raw.sessionBuffer, 64 * 1024)),
    resumeGraceMs: raw.resumeGrace === undefined ? DEFAULTS.resumeGraceMs : positiveInt('--resume-grace', raw.resumeGrace, 0),
    metricsListen: raw.metricsListen === undefined ? undefined : tcpAddress('--metrics-listen', raw.metricsListen),
  };
}
