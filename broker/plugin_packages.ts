// The plugin packages the operator installed for workers (--allow-audio-plugins DIR), laid out as
// DIR/<distribution>/<version>/, each a `pip install --no-deps --target` of that one release
// (scripts/install-audio-plugins.sh). A worker names a file of one by distribution, version and
// path inside it; the broker opens its own copy, never the worker's path, and only inside DIR.
import fs from 'node:fs';
import path from 'node:path';
import { inside, resolveReal } from './real_paths.js';

/** PEP 503: names compare lower-case, with runs of -, _ and . as one -. */
const normalizeDistribution = (name: string): string => name.toLowerCase().replace(/[-_.]+/g, '-');

const NORMALIZED_NAME = /^[a-z0-9]+(-[a-z0-9]+)*$/;

/** Why a package file could not be mapped to the broker's copy. */
export type Unresolved = { reason: 'no-package'; available: string[] } | { reason: 'outside' | 'missing'; root: string };

const packageId = (distribution: string, version: string): string => `${normalizeDistribution(distribution)}==${version}`;

export class PluginPackages {
  /** The real path of DIR: what every resolved file must stay inside. */
  readonly dir: string;
  /** "name==version" to the real path of its copy. */
  private readonly roots = new Map<string, string>();

  /** Throws an Error naming what does not follow the layout. */
  constructor(dir: string) {
    this.dir = fs.realpathSync(dir);
    const layout = `each entry must be <distribution>/<version>/ holding that release's <name>-<version>.dist-info, as scripts/install-audio-plugins.sh ${dir} NAME==VERSION makes it`;
    for (const name of visible(this.dir)) {
      const nameDir = path.join(this.dir, name);
      if (!NORMALIZED_NAME.test(name) || !fs.statSync(nameDir).isDirectory()) throw new Error(`${nameDir} is not a directory named for a distribution (lower case, - between words); ${layout}`);
      for (const version of visible(nameDir)) {
        const root = fs.realpathSync(path.join(nameDir, version));
        if (!inside(this.dir, root) || !fs.statSync(root).isDirectory()) throw new Error(`${path.join(nameDir, version)} is not a directory inside ${this.dir}; ${layout}`);
        const distInfo = visible(root).some((entry) => {
          const m = /^(.+)-([^-]+)\.dist-info$/.exec(entry);
          return m !== null && normalizeDistribution(m[1]!) === name && m[2] === version;
        });
        if (!distInfo) throw new Error(`${root} holds no dist-info of ${name} ${version}; ${layout}`);
        this.roots.set(`${name}==${version}`, root);
      }
    }
  }

  /** The installed releases, "name==version". */
  list(): string[] {
    return [...this.roots.keys()].sort();
  }

  /** The copy (its real path) of the release that holds `real`, a path resolve() returned. */
  releaseOf(real: string): string | undefined {
    return [...this.roots.values()].find((root) => inside(root, real));
  }

  /** The broker's copy of `file` (relative, '/'-separated) of that release, symlinks and `..` resolved. */
  resolve(distribution: string, version: string, file: string): { path: string } | Unresolved {
    const root = this.roots.get(packageId(distribution, version));
    if (root === undefined) return { reason: 'no-package', available: this.list() };
    if (path.isAbsolute(file) || file.includes('\\')) return { reason: 'outside', root };
    // Not path.join: it would apply `..` before the symlinks it follows.
    const real = resolveReal(`${root}/${file}`);
    if (!inside(root, real) || !inside(this.dir, real)) return { reason: 'outside', root };
    if (!fs.statSync(real, { throwIfNoEntry: false })?.isFile()) return { reason: 'missing', root };
    return { path: real };
  }
}

function visible(dir: string): string[] {
  return fs.readdirSync(dir).filter((entry) => !entry.startsWith('.'));
}
