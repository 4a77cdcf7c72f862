// Where a path really leads, as the kernel will resolve it when the library opens it: symlinks
// followed component by component, each `..` applied to where the previous component led (a
// lexical normalization first would let `link/..` escape). Host paths are checked with these.
import fs from 'node:fs';
import path from 'node:path';

/** The real path of absolute `p`, also when its tail does not exist (yet). */
export function resolveReal(p: string): string {
  const missing: string[] = [];
  let existing = p;
  for (;;) {
    try {
      // The resolved prefix holds no symlinks, so path.join may apply the tail's `..` lexically.
      return path.join(fs.realpathSync.native(existing), ...missing.reverse());
    } catch {
      if (path.dirname(existing) === existing) return path.join(existing, ...missing.reverse());
      missing.push(path.basename(existing));
      existing = path.dirname(existing);
    }
  }
}

export function inside(dir: string, p: string): boolean {
  return p === dir || p.startsWith(dir + path.sep);
}
