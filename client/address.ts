// Broker addresses: `unix:///abs/path.sock`, `unix:relative.sock`, `HOST:PORT`, `:PORT` or `PORT`
// (TCP on 127.0.0.1). Both the broker's --listen and the clients parse them here.

export const DEFAULT_ADDRESS = 'unix:///tmp/livekit-ffi-broker.sock';

export type BrokerAddress =
  | { kind: 'unix'; path: string; target: string }
  | { kind: 'tcp'; host: string; port: number; target: string };

export function parseAddress(input: string): BrokerAddress {
  const text = input.trim();
  if (text.startsWith('unix:')) {
    const path = text.startsWith('unix://') ? text.slice('unix://'.length) : text.slice('unix:'.length);
    if (path.length === 0) throw new Error(`address "${input}": a unix address needs a path, e.g. unix:///tmp/broker.sock`);
    return { kind: 'unix', path, target: path.startsWith('/') ? `unix://${path}` : `unix:${path}` };
  }
  const match = /^(?:(\[[0-9a-fA-F:]+\]|[^:\s]*):)?(\d{1,5})$/.exec(text);
  if (match === null) {
    throw new Error(`address "${input}": expected unix:///PATH, HOST:PORT, :PORT or PORT`);
  }
  const host = match[1] === undefined || match[1] === '' ? '127.0.0.1' : match[1];
  const port = Number(match[2]);
  if (port > 65535) throw new Error(`address "${input}": port must be 0-65535 (0: any free port)`);
  return { kind: 'tcp', host, port, target: `${host}:${port}` };
}
