// Requests that act on the broker's host rather than on media: loading native plugins, reading or
// writing files, opening audio devices. Workers may run them only where the operator allowed it,
// and only on paths inside the directories the operator named (symlinks and `..` resolved).
import fs from 'node:fs';
import path from 'node:path';
import { refuse, type Refusal } from './errors.js';
import type { SchemaMessage } from './livekit_schema.js';

export interface HostPolicyOptions {
  /** --allow-audio-plugins DIR: LoadAudioFilterPluginRequest paths must be inside. */
  audioPluginDir: string | undefined;
  /** --shared-dir DIR: files a worker has the library read or write must be inside. */
  sharedDir: string | undefined;
  /** --allow-platform-audio: the host's audio devices. */
  allowPlatformAudio: boolean;
}

const PLATFORM_AUDIO_KINDS = new Set(['newPlatformAudio', 'getAudioDevices', 'setRecordingDevice', 'setPlayoutDevice', 'startRecording', 'stopRecording']);

/** The real path of `p`: symlinks and `..` resolved, also for a path whose tail does not exist yet. */
function resolveReal(p: string): string {
  const missing: string[] = [];
  let existing = path.resolve(p);
  for (;;) {
    try {
      return path.join(fs.realpathSync(existing), ...missing.reverse());
    } catch {
      if (path.dirname(existing) === existing) return path.join(existing, ...missing.reverse());
      missing.push(path.basename(existing));
      existing = path.dirname(existing);
    }
  }
}

function inside(dir: string, p: string): boolean {
  return p === dir || p.startsWith(dir + path.sep);
}

export class HostPolicy {
  private readonly audioPluginDir: string | undefined;
  private readonly sharedDir: string | undefined;

  constructor(private readonly options: HostPolicyOptions) {
    // Resolved once: the operator's directories may themselves be symlinks.
    this.audioPluginDir = options.audioPluginDir && fs.realpathSync(options.audioPluginDir);
    this.sharedDir = options.sharedDir && fs.realpathSync(options.sharedDir);
  }

  /** null when the request may go on; else the refusal. */
  check(kind: string, typeName: string, value: SchemaMessage): Refusal | null {
    if (PLATFORM_AUDIO_KINDS.has(kind)) {
      return this.options.allowPlatformAudio ? null : refuse.hostPolicy(typeName, "opens the broker host's audio devices", '--allow-platform-audio');
    }
    switch (kind) {
      case 'loadAudioFilterPlugin': {
        const paths = [String(value.pluginPath ?? ''), ...((value.dependencies as string[] | undefined) ?? [])];
        return this.paths(typeName, paths, this.audioPluginDir, '--allow-audio-plugins DIR', 'loads native code from');
      }
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

  private paths(typeName: string, paths: string[], dir: string | undefined, flag: string, action: string): Refusal | null {
    for (const p of paths) {
      if (dir === undefined) return refuse.hostPolicy(typeName, `${action} the broker host (${p})`, flag);
      if (!path.isAbsolute(p)) return refuse.hostPolicy(typeName, `path "${p}" is not absolute`, flag);
      if (!inside(dir, resolveReal(p))) return refuse.hostPolicy(typeName, `${action} ${p}, which resolves outside ${dir}`, flag);
    }
    return null;
  }
}
