// The CLI as an operator uses it: serve on a socket path (stale and live sockets), info, --help.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { BrokerClient } from '../client/broker_client.js';
import { CLI, WORKERS, spawnWorker, startBroker, tempDir } from './helpers/processes.js';

const run = promisify(execFile);

test('info --json prints versions, the library path and each session with its owned handles', async () => {
  const broker = await startBroker();
  const worker = spawnWorker(path.join(WORKERS, 'audio_worker.js'), ['--address', broker.address, '--streams', '1', '--seconds', '0']);
  try {
    const ready = await worker.next<{ sessionId: string }>('ready');
    const { stdout } = await run(process.execPath, [CLI, 'info', '--address', broker.address, '--json']);
    const info = JSON.parse(stdout);
    assert.equal(info.ffiVersion, '0.12.75');
    assert.match(info.ffiLibrary, /rtc-node\.linux-x64-gnu\.node$/);
    const session = info.sessions.find((s: { sessionId: string }) => s.sessionId === ready.sessionId);
    assert.equal(session.clientName, 'audio-worker');
    assert.equal(session.ownedHandles, '3', 'source, track and stream');
    assert.equal(info.ownedHandles, '3');
    const text = (await run(process.execPath, [CLI, 'info', '--address', broker.address])).stdout;
    assert.match(text, new RegExp(`${ready.sessionId}  audio-worker pid \\d+  handles 3`));
  } finally {
    worker.proc.kill('SIGKILL');
    await worker.exited;
    await broker.stop();
  }
});

test('info against no broker fails with a message naming the address', async () => {
  const address = `unix://${path.join(tempDir(), 'none.sock')}`;
  await assert.rejects(run(process.execPath, [CLI, 'info', '--address', address]), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 1);
    assert.match(err.stderr, /is a broker listening on unix:\/\/.*none\.sock/);
    return true;
  });
});

test('a stale socket file of a killed broker is replaced; a live broker on the path is an error', async () => {
  const first = await startBroker();
  first.proc.kill('SIGKILL');
  await new Promise((r) => first.proc.once('exit', r));
  assert.ok(fs.existsSync(first.socketPath), 'SIGKILL leaves the socket file behind');

  const second = spawn(process.execPath, [CLI, 'serve', '--listen', first.address], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await new Promise<void>((resolve, reject) => {
      second.stdout!.on('data', (d: Buffer) => d.toString().includes('"listening"') && resolve());
      second.once('exit', (code) => reject(new Error(`second broker exited ${code}`)));
    });
    const info = await BrokerClient.info(first.address);
    assert.equal(info.sessions.length, 0);
    assert.equal((fs.statSync(first.socketPath).mode & 0o777).toString(8), '660');

    const third = await run(process.execPath, [CLI, 'serve', '--listen', first.address]).then(
      () => assert.fail('a second broker on a live socket must not start'),
      (err: { code: number; stdout: string }) => err,
    );
    assert.equal(third.code, 1);
    assert.match(third.stdout, /another process is listening on .*broker\.sock/);
  } finally {
    second.kill('SIGTERM');
    await new Promise((r) => second.once('exit', r));
  }
  assert.equal(fs.existsSync(first.socketPath), false, 'socket file removed on SIGTERM');
});

test('serve and info document their options; a bad option value is refused before start', async () => {
  const serveHelp = (await run(process.execPath, [CLI, 'serve', '--help'])).stdout;
  for (const flag of ['--listen', '--ffi-lib', '--log-level', '--max-message-size', '--socket-mode', '--shutdown-timeout']) assert.ok(serveHelp.includes(flag), flag);
  const infoHelp = (await run(process.execPath, [CLI, 'info', '--help'])).stdout;
  for (const flag of ['--address', '--json']) assert.ok(infoHelp.includes(flag), flag);
  await assert.rejects(run(process.execPath, [CLI, 'serve', '--listen', 'nonsense:addr:x']), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 2);
    assert.match(err.stderr, /invalid --listen "nonsense:addr:x"/);
    return true;
  });
});
