// The daemon's settings: one table that gives each its flag, kind, default and help. A value comes
// from the flag, else the LIVEKIT_FFI_BROKER_<NAME> environment variable, else the --config file
// (JSON, keys named like the flags), else the default. Every value is validated before anything
// starts, and an error names the setting, what was given and what is allowed.
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_ADDRESS, parseAddress } from '../client/address.js';
import { LOG_LEVELS, type LogLevel } from './logger.js';
import type { LaneLimits } from './media_lane.js';
import { PluginPackages } from './plugin_packages.js';
import type { SessionLimits } from './session.js';

type Kind = 'string' | 'list' | 'bool' | 'size' | 'int' | 'dir' | 'plugin-packages' | 'file' | 'files' | 'addresses' | 'tcp' | 'octal' | 'level' | 'group' | 'sdk' | 'release';

interface Setting {
  flag: string;
  kind: Kind;
  help: string;
  /** Shown in --help; the resolved default is in DEFAULTS. */
  defaultText?: string;
}

// The SDK names liblivekit_ffi tells livekit-server about (livekit-api's client_info_sdk_for_name),
// each a value of the server's ClientInfo.SDK enum (JS, SWIFT, ANDROID, FLUTTER, GO, UNITY,
// REACT_NATIVE, RUST, PYTHON, CPP, UNITY_WEB, NODE); any other name reaches the server as UNKNOWN,
// and the library logs "unknown SDK name in signal options" on every connect.
export const SERVER_SDK_NAMES = ['python', 'node', 'rust', 'go', 'js', 'swift', 'ios', 'android', 'flutter', 'unity', 'reactnative', 'cpp', 'unityweb'] as const;
// The library is initialized once for the whole process, so every session's rooms present this SDK
// to the server: the Python SDK, which the broker's workers run, at the release this project's
// Python client is tested with (the server decides some behaviour by SDK name and version).
export const DEFAULT_SDK = { name: 'python', version: '1.2.1' } as const;

export const SETTINGS: readonly Setting[] = [
  { flag: 'listen', kind: 'addresses', help: 'unix:///PATH or HOST:PORT (TCP host defaults to 127.0.0.1); repeatable', defaultText: DEFAULT_ADDRESS },
  { flag: 'ffi-lib', kind: 'file', help: 'liblivekit_ffi to load (also env LIVEKIT_LIB_PATH)', defaultText: 'the binary of the pinned npm package' },
  { flag: 'sdk-name', kind: 'sdk', help: `SDK name the library gives livekit-server for every room: one of ${SERVER_SDK_NAMES.join(', ')}`, defaultText: DEFAULT_SDK.name },
  { flag: 'sdk-version', kind: 'release', help: 'SDK version the library gives livekit-server with --sdk-name (MAJOR.MINOR.PATCH)', defaultText: DEFAULT_SDK.version },
  { flag: 'log-level', kind: 'level', help: `log level: ${LOG_LEVELS.join(', ')}`, defaultText: 'info' },
  { flag: 'log-pretty', kind: 'bool', help: 'human-readable logs instead of JSON lines', defaultText: 'on when stdout is a terminal' },
  { flag: 'max-message-size', kind: 'size', help: 'largest message a worker may send, e.g. 65536, 64k, 64MiB', defaultText: '64MiB' },
  { flag: 'socket-mode', kind: 'octal', help: 'file mode of Unix sockets', defaultText: '660' },
  { flag: 'socket-group', kind: 'group', help: 'group (name or gid) of Unix sockets, for workers in that group', defaultText: "the broker's" },
  { flag: 'shutdown-timeout', kind: 'int', help: 'ms SIGTERM waits for sessions to take what is queued', defaultText: '5000' },
  { flag: 'session-buffer', kind: 'size', help: 'undelivered bytes per session past which media frames are dropped, oldest first; 4x this of other events ends the session', defaultText: '16MiB' },
  { flag: 'resume-grace', kind: 'int', help: 'ms a session whose stream broke keeps its handles for a resume (0: release at once)', defaultText: '10000' },
  { flag: 'max-handles', kind: 'int', help: 'handles one session may own; past it its requests are refused with RESOURCE_EXHAUSTED', defaultText: '50000' },
  { flag: 'max-request-rate', kind: 'int', help: 'requests per second one session may send (0: no limit); past it RESOURCE_EXHAUSTED', defaultText: '20000' },
  { flag: 'auth-token-file', kind: 'files', help: 'a file holding a token workers must present in Hello.auth_token; repeatable (any one matches)', defaultText: 'no authentication' },
  { flag: 'tls-cert', kind: 'file', help: 'PEM certificate chain for TCP listeners (with --tls-key)', defaultText: 'TCP without TLS' },
  { flag: 'tls-key', kind: 'file', help: 'PEM private key for TCP listeners' },
  { flag: 'tls-client-ca', kind: 'file', help: 'PEM CA bundle: TCP clients must present a certificate it signed (mTLS)' },
  { flag: 'metrics-listen', kind: 'tcp', help: 'serve Prometheus metrics at http://HOST:PORT/metrics', defaultText: 'off' },
  {
    flag: 'allow-audio-plugins',
    kind: 'plugin-packages',
    help: 'let workers load audio filter plugins (and their models) from the packages in DIR, laid out DIR/<distribution>/<version>/ by scripts/install-audio-plugins.sh; the broker uses these copies, never a worker\'s path',
    defaultText: 'refused',
  },
  { flag: 'shared-dir', kind: 'dir', help: 'let workers have the library read and write files inside DIR', defaultText: 'refused' },
  { flag: 'allow-platform-audio', kind: 'bool', help: "let workers open the host's audio devices", defaultText: 'refused' },
  { flag: 'media-lane', kind: 'bool', help: 'grant workers on this host that ask for it a shared-memory media lane (frames cross without gRPC)', defaultText: 'on' },
  { flag: 'media-lane-max-size', kind: 'size', help: 'largest media lane region a worker may ask for (a session has two)', defaultText: '256MiB' },
];

export const ENV_PREFIX = 'LIVEKIT_FFI_BROKER_';
export const envName = (flag: string): string => ENV_PREFIX + flag.toUpperCase().replaceAll('-', '_');

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  clientCa: Buffer | undefined;
}

export interface ServeConfig {
  listen: string[];
  ffiLib: string | undefined;
  /** What livekit_ffi_initialize tells the server the SDK is. */
  sdk: { name: string; version: string };
  logLevel: LogLevel;
  logPretty: boolean;
  maxMessageBytes: number;
  socketMode: number;
  socketGid: number | undefined;
  shutdownTimeoutMs: number;
  sessionLimits: SessionLimits;
  resumeGraceMs: number;
  maxHandles: number;
  maxRequestRate: number;
  authTokens: string[];
  tls: TlsFiles | undefined;
  metricsListen: { host: string; port: number } | undefined;
  audioPluginDir: string | undefined;
  sharedDir: string | undefined;
  allowPlatformAudio: boolean;
  mediaLane: LaneLimits;
}

// What cannot be dropped may use this many times the session buffer before the session fails.
const HARD_CAP_FACTOR = 4;

export class ConfigError extends Error {
  constructor(setting: string, given: unknown, allowed: string) {
    super(`invalid ${setting} ${JSON.stringify(given)}: ${allowed}`);
    this.name = 'ConfigError';
  }
}

const UNITS: Record<string, number> = { '': 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3 };

type Raw = string | boolean | string[];

/** Where a value came from, for error messages: "--x", "LIVEKIT_FFI_BROKER_X" or "x in FILE". */
interface Given {
  value: Raw;
  from: string;
}

function parse(setting: Setting, given: Given): unknown {
  const { value, from } = given;
  const text = (v: Raw): string => (Array.isArray(v) ? v.join(',') : String(v));
  const list = (v: Raw): string[] => (Array.isArray(v) ? v.map(String) : String(v).split(',').map((s) => s.trim()).filter(Boolean));
  const fail = (allowed: string, item: unknown = value): never => {
    throw new ConfigError(from, item, allowed);
  };
  switch (setting.kind) {
    case 'string':
      return text(value);
    case 'list':
      return list(value);
    case 'bool': {
      if (typeof value === 'boolean') return value;
      const t = text(value).toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(t)) return true;
      if (['0', 'false', 'no', 'off'].includes(t)) return false;
      return fail('true or false');
    }
    case 'size': {
      const match = /^(\d+)\s*([a-z]*)$/i.exec(text(value).trim());
      const unit = match === null ? undefined : UNITS[match[2]!.toLowerCase()];
      if (match === null || unit === undefined || Number(match[1]) * unit < 1024) fail('a size of at least 1024 bytes, e.g. 65536, 64k or 16MiB');
      return Number(match![1]) * unit!;
    }
    case 'int': {
      const n = Number(text(value));
      if (!Number.isInteger(n) || n < 0) fail('a whole number >= 0');
      return n;
    }
    case 'octal':
      if (!/^0?[0-7]{3}$/.test(text(value))) fail('an octal file mode such as 660');
      return parseInt(text(value), 8);
    case 'sdk':
      if (!(SERVER_SDK_NAMES as readonly string[]).includes(text(value))) fail(`an SDK name livekit-server knows: ${SERVER_SDK_NAMES.join(', ')}`);
      return text(value);
    case 'release':
      if (!/^\d+\.\d+\.\d+$/.test(text(value))) fail('a version MAJOR.MINOR.PATCH, e.g. 1.2.1');
      return text(value);
    case 'level':
      if (!(LOG_LEVELS as readonly string[]).includes(text(value))) fail(`one of ${LOG_LEVELS.join(', ')}`);
      return text(value);
    case 'dir': {
      const dir = text(value);
      if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) fail('an existing directory');
      return path.resolve(dir);
    }
    case 'plugin-packages': {
      const dir = parse({ ...setting, kind: 'dir' }, given) as string;
      try {
        new PluginPackages(dir);
      } catch (err) {
        fail(`a directory of plugin packages: ${(err as Error).message}`);
      }
      return dir;
    }
    case 'file':
    case 'files': {
      const files = setting.kind === 'file' ? [text(value)] : list(value);
      for (const f of files) if (!fs.statSync(f, { throwIfNoEntry: false })?.isFile()) fail('an existing file', f);
      return setting.kind === 'file' ? path.resolve(files[0]!) : files.map((f) => path.resolve(f));
    }
    case 'addresses':
      for (const a of list(value)) {
        try {
          parseAddress(a);
        } catch (err) {
          fail((err as Error).message, a);
        }
      }
      return list(value);
    case 'tcp': {
      let address;
      try {
        address = parseAddress(text(value));
      } catch (err) {
        return fail((err as Error).message);
      }
      if (address.kind !== 'tcp') return fail('HOST:PORT or :PORT (TCP)');
      return { host: address.host, port: address.port };
    }
    case 'group': {
      const t = text(value);
      if (/^\d+$/.test(t)) return Number(t);
      const line = fs.readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.split(':')[0] === t);
      return line === undefined ? fail('a group name of /etc/group or a numeric gid') : Number(line.split(':')[2]);
    }
  }
}

function readConfigFile(file: string): Record<string, Raw> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError('--config', file, `a readable JSON file (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError('--config', file, 'a JSON object whose keys are setting names');
  const known = new Set(SETTINGS.map((s) => s.flag));
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) throw new ConfigError(`key "${key}" in ${file}`, (parsed as Record<string, unknown>)[key], `not a setting; known: ${[...known].join(', ')}`);
  }
  const values: Record<string, Raw> = {};
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) values[key] = Array.isArray(value) ? value.map(String) : typeof value === 'boolean' ? value : String(value);
  return values;
}

/**
 * `flags`: the options commander parsed, keyed by flag name (only those given); `--config` among
 * them names the file.
 */
export function resolveServeConfig(flags: Record<string, Raw | undefined>, env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const configFile = (flags.config as string | undefined) ?? env[envName('config')];
  const file = configFile === undefined ? {} : readConfigFile(configFile);
  const v: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const flag = flags[setting.flag];
    const fromEnv = env[envName(setting.flag)];
    const given: Given | undefined =
      flag !== undefined && !(Array.isArray(flag) && flag.length === 0)
        ? { value: flag, from: `--${setting.flag}` }
        : fromEnv !== undefined && fromEnv !== ''
          ? { value: fromEnv, from: envName(setting.flag) }
          : file[setting.flag] !== undefined
            ? { value: file[setting.flag]!, from: `"${setting.flag}" in ${configFile}` }
            : undefined;
    if (given !== undefined) v[setting.flag] = parse(setting, given);
  }
  const tlsCert = v['tls-cert'] as string | undefined;
  const tlsKey = v['tls-key'] as string | undefined;
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new ConfigError('--tls-cert/--tls-key', tlsCert ?? tlsKey, 'both, or neither');
  if (v['tls-client-ca'] !== undefined && tlsCert === undefined) throw new ConfigError('--tls-client-ca', v['tls-client-ca'], 'only with --tls-cert and --tls-key');
  const bufferBytes = (v['session-buffer'] as number | undefined) ?? 16 * 1024 * 1024;
  return {
    listen: (v.listen as string[] | undefined) ?? [DEFAULT_ADDRESS],
    ffiLib: (v['ffi-lib'] as string | undefined) ?? (env.LIVEKIT_LIB_PATH || undefined),
    sdk: { name: (v['sdk-name'] as string | undefined) ?? DEFAULT_SDK.name, version: (v['sdk-version'] as string | undefined) ?? DEFAULT_SDK.version },
    logLevel: (v['log-level'] as LogLevel | undefined) ?? 'info',
    logPretty: (v['log-pretty'] as boolean | undefined) ?? process.stdout.isTTY === true,
    // A 4K RGBA frame is 33 MB; 64 MiB leaves room for one with its message.
    maxMessageBytes: (v['max-message-size'] as number | undefined) ?? 64 * 1024 * 1024,
    socketMode: (v['socket-mode'] as number | undefined) ?? 0o660,
    socketGid: v['socket-group'] as number | undefined,
    shutdownTimeoutMs: (v['shutdown-timeout'] as number | undefined) ?? 5000,
    // 16 MiB: ~2 s of 20 audio streams, or 5 frames of 1080p I420 video.
    sessionLimits: { bufferBytes, hardCapBytes: bufferBytes * HARD_CAP_FACTOR },
    resumeGraceMs: (v['resume-grace'] as number | undefined) ?? 10_000,
    maxHandles: (v['max-handles'] as number | undefined) ?? 50_000,
    maxRequestRate: (v['max-request-rate'] as number | undefined) ?? 20_000,
    authTokens: ((v['auth-token-file'] as string[] | undefined) ?? []).map((f) => {
      const token = fs.readFileSync(f, 'utf8').trim();
      if (token.length < 16) throw new ConfigError('--auth-token-file', f, 'a file holding a token of at least 16 characters');
      return token;
    }),
    tls: tlsCert === undefined ? undefined : { cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey!), clientCa: v['tls-client-ca'] === undefined ? undefined : fs.readFileSync(v['tls-client-ca'] as string) },
    metricsListen: v['metrics-listen'] as { host: string; port: number } | undefined,
    audioPluginDir: v['allow-audio-plugins'] as string | undefined,
    sharedDir: v['shared-dir'] as string | undefined,
    allowPlatformAudio: (v['allow-platform-audio'] as boolean | undefined) ?? false,
    mediaLane: { enabled: (v['media-lane'] as boolean | undefined) ?? true, maxRegionBytes: (v['media-lane-max-size'] as number | undefined) ?? 256 * 1024 * 1024 },
  };
}
