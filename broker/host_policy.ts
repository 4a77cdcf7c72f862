// Requests that act on the broker's host rather than on media: loading native plugins, reading or
// writing files, opening audio devices. Workers may run them only where the operator allowed it,
// and only on paths inside the directories the operator named (symlinks and `..` resolved). Files
// of packages (audio filter plugins, their models) are the broker's own copies: a worker's path is
// replaced, never opened.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { PackageFile } from '../proto/gen/ffi_broker_pb.js';
import { Refusal, refuse } from './errors.js';
import type { SchemaMessage } from './livekit_schema.js';
import { packageFileFields, type PackageFileField } from './package_file_fields.js';
import { PluginPackages } from './plugin_packages.js';
import { inside, resolveReal } from './real_paths.js';

export interface HostPolicyOptions {
  /** --allow-audio-plugins DIR: the plugin packages, DIR/<distribution>/<version>/ (plugin_packages.ts). */
  audioPluginDir: string | undefined;
  /** --shared-dir DIR: files a worker has the library read or write must be inside. */
  sharedDir: string | undefined;
  /** --allow-platform-audio: the host's audio devices. */
  allowPlatformAudio: boolean;
}

const PLATFORM_AUDIO_KINDS = new Set(['newPlatformAudio', 'getAudioDevices', 'setRecordingDevice', 'setPlayoutDevice', 'startRecording', 'stopRecording']);

/** In a JSON document of a package file field, the strings taken as paths: every one with a path separator, and any under a key that says so. */
const PATH_KEY = /(path|file|dir)$/i;
const looksLikePath = (key: string | undefined, s: string): boolean => s.includes('/') || s.includes('\\') || (key !== undefined && PATH_KEY.test(key));

function mapJsonStrings(value: unknown, key: string | undefined, map: (key: string | undefined, s: string) => string): unknown {
  if (typeof value === 'string') return map(key, value);
  if (Array.isArray(value)) return value.map((v) => mapJsonStrings(v, key, map));
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapJsonStrings(v, k, map)]));
  return value;
}

export class HostPolicy {
  private readonly plugins: PluginPackages | undefined;
  private readonly sharedDir: string | undefined;

  constructor(
    private readonly options: HostPolicyOptions,
    private readonly log: Logger,
  ) {
    // Resolved once: the operator's directories may themselves be symlinks.
    this.plugins = options.audioPluginDir === undefined ? undefined : new PluginPackages(options.audioPluginDir);
    this.sharedDir = options.sharedDir && fs.realpathSync(options.sharedDir);
  }

  /** The plugin packages workers may use, "name==version"; undefined when none are allowed. */
  pluginPackages(): string[] | undefined {
    return this.plugins?.list();
  }

  /** The broker's copy of the plugin release that holds `copy` (a path this policy mapped a request's onto). */
  pluginReleaseOf(copy: string): string | undefined {
    return this.plugins?.releaseOf(copy);
  }

  /**
   * null when the request may go on, its package file paths replaced by the broker's copies
   * (`packageFiles` describes them); else the refusal.
   */
  check(kind: string, typeName: string, value: SchemaMessage, packageFiles: readonly PackageFile[]): Refusal | null {
    const fields = packageFileFields(value.getType().typeName);
    if (fields.length > 0) {
      try {
        this.toBrokerCopies(typeName, value, fields, packageFiles);
      } catch (err) {
        if (err instanceof Refusal) return err;
        throw err;
      }
    }
    if (PLATFORM_AUDIO_KINDS.has(kind)) {
      return this.options.allowPlatformAudio ? null : refuse.hostPolicy(typeName, "opens the broker host's audio devices", '--allow-platform-audio');
    }
    switch (kind) {
      case 'byteWriteToFile': {
        if (value.directory === undefined) return refuse.hostPolicy(typeName, 'writes into a default directory of the broker host; set directory', '--shared-dir DIR');
        const name = value.nameOverride as string | undefined;
        if (name !== undefined && (name.includes('/') || name === '..' || name === '.')) return refuse.hostPolicy(typeName, `name_override "${name}" is not a plain file name`, '--shared-dir DIR');
        return this.paths(typeName, [String(value.directory)], this.sharedDir, '--shared-dir DIR', 'writes a file into');
      }
      case 'sendFile':
        return this.paths(typeName, [String(value.filePath ?? '')], this.sharedDir, '--shared-dir DIR', 'reads a file of');
      default:
        return null;
    }
  }

  /** Replaces every package file path in `value`'s `fields` with the broker's copy; throws a Refusal. */
  private toBrokerCopies(typeName: string, value: SchemaMessage, fields: readonly PackageFileField[], packageFiles: readonly PackageFile[]): void {
    const described = new Map(packageFiles.map((f) => [f.path, f]));
    const mapped: Record<string, string> = {};
    const copyOf = (field: string, named: string): string => {
      const file = described.get(named);
      if (file === undefined) throw refuse.undescribedPackageFile(typeName, field, named);
      if (this.plugins === undefined) throw refuse.packageNotInstalled(typeName, file.distribution, file.version, undefined);
      const copy = this.plugins.resolve(file.distribution, file.version, file.file);
      if ('path' in copy) {
        mapped[named] = copy.path;
        return copy.path;
      }
      if (copy.reason === 'no-package') throw refuse.packageNotInstalled(typeName, file.distribution, file.version, copy.available);
      if (copy.reason === 'outside') throw refuse.packageFileOutside(typeName, file.distribution, file.version, file.file, copy.root);
      throw refuse.packageFileMissing(typeName, file.distribution, file.version, file.file, copy.root);
    };
    for (const { field, localName, holds } of fields) {
      const current = value[localName] as string | string[] | undefined;
      if (current === undefined) continue;
      if (holds === 'path') {
        value[localName] = Array.isArray(current) ? current.map((p) => copyOf(field, p)) : copyOf(field, current);
        continue;
      }
      let document: unknown;
      try {
        document = JSON.parse(current as string);
      } catch (err) {
        throw refuse.notJson(typeName, field, (err as Error).message);
      }
      value[localName] = JSON.stringify(mapJsonStrings(document, undefined, (key, s) => (described.has(s) || looksLikePath(key, s) ? copyOf(field, s) : s)));
    }
    // Rare (a plugin load per worker process, a filtered stream per track), and what an operator
    // checks when a plugin misbehaves: which of the broker's files stood in for the worker's.
    if (Object.keys(mapped).length > 0) this.log.info({ request: typeName, mapped }, "package files of the request mapped to the broker's copies");
  }

  private paths(typeName: string, paths: string[], dir: string | undefined, flag: string, action: string): Refusal | null {
    for (const p of paths) {
      if (dir === undefined) return refuse.hostPolicy(typeName, `${action} the broker host (${p})`, flag);
      if (!path.isAbsolute(p)) return refuse.hostPolicy(typeName, `path "${p}" is not absolute`, flag);
      if (!inside(dir, resolveReal(p))) return refuse.hostPolicy(typeName, `${action} ${p}, which resolves outside ${dir}`, flag);
    }
    return null;
  }
}
