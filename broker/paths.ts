// Where the package's own files are, whether the code runs from dist/ or from a checkout.
import fs from 'node:fs';
import path from 'node:path';

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'livekit-ffi-broker') return dir;
    if (path.dirname(dir) === dir) throw new Error(`livekit-ffi-broker: no package.json of this package above ${start}`);
  }
}

export const packageRoot = findPackageRoot(__dirname);
export const packageVersion: string = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')).version;
export const nativeBuildDir = path.join(packageRoot, 'build', 'native');
