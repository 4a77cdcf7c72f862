// The SDK a session reports, the bridges it gets for it (broker/sdk_bridges.ts), how the broker
// reads the version of a library outside its npm package, and the SDK the library presents to the
// server (--sdk-name, --sdk-version). The bridge itself, against a real livekit-server and the
// livekit 1.1.5 SDK, is client/python/tests/test_sdk_bridges.py.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { BrokerClient } from '../client/broker_client.js';
import { bridgesFor } from '../broker/sdk_bridges.js';
import { locateLibrary } from '../broker/native/ffi_library.js';
import { CLI, startBroker, tempDir, type BrokerProcess } from './helpers/processes.js';

const run = promisify(execFile);

test('the bridges table: python before 1.1.10 on a library from 0.12.59 gets ready-for-room-event, nothing else does', () => {
  const bridged = (sdk: string, version: string, library = '0.12.75') => bridgesFor(sdk, version, library).length > 0;
  for (const version of ['1.0.0', '1.1.5', '1.1.9', 'v1.1.9', '1.1.9rc1']) assert.ok(bridged('python', version), version);
  for (const version of ['1.1.10', '1.1.21', '1.2.1', '2.0.0', '', 'latest', '1.1']) assert.ok(!bridged('python', version), version);
  assert.ok(!bridged('node', '0.1.0') && !bridged('', '1.1.5'), 'another SDK, or none');
  // The library livekit 1.1.5 ships (0.12.52) predates the handshake; an unreadable version is taken as current.
  assert.ok(!bridged('python', '1.1.5', '0.12.52') && !bridged('python', '1.1.5', '0.12.58'));
  assert.ok(bridged('python', '1.1.5', '0.12.59') && bridged('python', '1.1.5', 'unknown'));
});

test('a library outside its npm package: its version is read from the file', () => {
  const npm = locateLibrary(undefined);
  const dir = tempDir();
  const copy = path.join(dir, 'liblivekit_ffi.so');
  fs.symlinkSync(npm.path, copy);
  assert.deepEqual(locateLibrary(copy), { path: copy, version: npm.version });
  fs.writeFileSync(path.join(dir, 'not_a_library.so'), 'no version here');
  assert.equal(locateLibrary(path.join(dir, 'not_a_library.so')).version, 'unknown');
});

let broker: BrokerProcess;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker.stop();
});

test('a session says which SDK it runs; Welcome, Info and the log say which bridges it got', async () => {
  const old = await BrokerClient.connect(broker.address, { clientName: 'old', sdk: 'python', sdkVersion: '1.1.5' });
  const current = await BrokerClient.connect(broker.address, { clientName: 'current', sdk: 'python', sdkVersion: '1.2.1' });
  const silent = await BrokerClient.connect(broker.address, { clientName: 'silent' });
  try {
    assert.deepEqual([old.bridges, current.bridges, silent.bridges], [['ready-for-room-event'], [], []]);
    const sessions = (await broker.info()).sessions.map((s) => ({ client: s.clientName, sdk: s.sdk, sdkVersion: s.sdkVersion, bridges: s.bridges }));
    assert.deepEqual(
      sessions.sort((a, b) => a.client.localeCompare(b.client)),
      [
        { client: 'current', sdk: 'python', sdkVersion: '1.2.1', bridges: [] },
        { client: 'old', sdk: 'python', sdkVersion: '1.1.5', bridges: ['ready-for-room-event'] },
        { client: 'silent', sdk: '', sdkVersion: '', bridges: [] },
      ],
    );
    const started = broker.logs.find((r) => r.msg === 'session started' && r.client === 'old');
    assert.deepEqual([started?.sdk, started?.sdkVersion, started?.bridges], ['python', '1.1.5', ['ready-for-room-event']]);
    const printed = (await run(process.execPath, [CLI, 'info', '--address', broker.address])).stdout;
    assert.match(printed, /old pid \d+ .* sdk python 1\.1\.5 {2}bridges ready-for-room-event/);
  } finally {
    for (const c of [old, current, silent]) await c.close();
  }
});

test('--sdk-name and --sdk-version: the library is initialized with them; a name the server does not know stops the broker', async () => {
  const loaded = broker.logs.find((r) => r.msg === 'liblivekit_ffi loaded and initialized');
  assert.deepEqual(loaded?.sdk, { name: 'python', version: '1.2.1' }, 'the defaults');
  const other = await startBroker(['--sdk-name', 'node', '--sdk-version', '0.13.1']);
  try {
    assert.deepEqual(other.logs.find((r) => r.msg === 'liblivekit_ffi loaded and initialized')?.sdk, { name: 'node', version: '0.13.1' });
  } finally {
    await other.stop();
  }
  const fails = async (args: string[], pattern: RegExp) =>
    assert.rejects(run(process.execPath, [CLI, 'serve', ...args]), (err: { code: number; stderr: string }) => err.code === 2 && pattern.test(err.stderr));
  await fails(['--sdk-name', 'livekit-ffi-broker'], /invalid --sdk-name "livekit-ffi-broker": an SDK name livekit-server knows: python, node, rust/);
  await fails(['--sdk-version', 'latest'], /invalid --sdk-version "latest": a version MAJOR\.MINOR\.PATCH/);
});
