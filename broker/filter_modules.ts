// Audio filter module ids. The library keeps one process-wide registry of plugins by module id,
// and the Python plugin picks `id(module)`: an address, the same in forked workers and possibly
// in unrelated ones with another release. So the broker registers each plugin under its own
// copy's path (one entry per plugin file, however many workers load it), and maps the id a
// stream names: the one its session loaded under that id, else the loaded plugin of the release
// its filter options name files of (a forked worker whose parent imported the plugin), else left
// as it is for the library to refuse, as in-process.
import type { SchemaMessage } from './livekit_schema.js';

export class FilterModules<O extends object> {
  private readonly bySession = new WeakMap<O, Map<string, string>>();
  /** Release copy (plugin_packages.ts) -> the module id its plugin was registered under. */
  private readonly byRelease = new Map<string, string>();

  /** `releaseOf`: the release copy holding a path the host policy mapped onto the broker's copies. */
  constructor(private readonly releaseOf: (copy: string) => string | undefined) {}

  /** Rewrites the module id of a plugin load or a filtered stream, after the host policy mapped its paths. */
  apply(owner: O, typeName: string, value: SchemaMessage): void {
    if (typeName === 'LoadAudioFilterPluginRequest') {
      const registered = String(value.pluginPath);
      const ids = this.bySession.get(owner) ?? new Map<string, string>();
      this.bySession.set(owner, ids);
      ids.set(String(value.moduleId), registered);
      const release = this.releaseOf(registered);
      if (release !== undefined) this.byRelease.set(release, registered);
      value.moduleId = registered;
      return;
    }
    const named = value.audioFilterModuleId;
    if (typeof named !== 'string') return;
    const registered = this.bySession.get(owner)?.get(named) ?? this.ofOptions(value.audioFilterOptions);
    if (registered !== undefined) value.audioFilterModuleId = registered;
  }

  private ofOptions(options: unknown): string | undefined {
    if (typeof options !== 'string') return undefined;
    const strings: string[] = [];
    JSON.parse(options, (_key, v: unknown) => (typeof v === 'string' && strings.push(v), v));
    for (const s of strings) {
      const release = this.releaseOf(s);
      const registered = release === undefined ? undefined : this.byRelease.get(release);
      if (registered !== undefined) return registered;
    }
    return undefined;
  }
}
