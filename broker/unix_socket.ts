// The broker's Unix socket file: a stale one left by a dead broker is replaced, a live one (another
// broker answers on it) is an error, and the file gets its mode once bound.
import fs from 'node:fs';
import net from 'node:net';

/** Resolves when `path` is free to bind; rejects when another process is listening on it. */
export async function claimSocketPath(path: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!stat.isSocket()) throw new Error(`${path} exists and is not a socket; remove it or choose another --listen path`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another process is listening on ${path}; stop it or choose another --listen path`);
  fs.unlinkSync(path);
}

export function removeSocketFile(path: string): void {
  try {
    if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
  } catch {
    // Already gone.
  }
}
