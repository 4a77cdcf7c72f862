// Settings from flags, environment and a config file, validated at start; and what guards a
// broker: tokens, TLS and mTLS on TCP, the socket's mode and group, per-session limits.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AudioSourceType, NewAudioSourceRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { BrokerClient } from '../client/broker_client.js';
import { BrokerError } from '../client/broker_error.js';
import { Error_Code } from '../proto/gen/ffi_broker_pb.js';
import { resolveServeConfig } from '../broker/config.js';
import { ffi } from './helpers/assertions.js';
import { CLI, startBroker, tempDir } from './helpers/processes.js';

const run = promisify(execFile);
const newSource = () => ffi({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 100 }) });

test('a flag wins over the environment, which wins over the config file', () => {
  const file = path.join(tempDir(), 'broker.json');
  fs.writeFileSync(file, JSON.stringify({ 'session-buffer': '1MiB', 'resume-grace': 1000, 'log-level': 'warn', listen: ['unix:///tmp/a.sock', '127.0.0.1:7000'] }));
  const config = resolveServeConfig({ config: file, 'resume-grace': '2000' }, { LIVEKIT_FFI_BROKER_LOG_LEVEL: 'debug', LIVEKIT_FFI_BROKER_RESUME_GRACE: '3000' });
  assert.equal(config.sessionLimits.bufferBytes, 1024 * 1024, 'from the file');
  assert.equal(config.logLevel, 'debug', 'the environment over the file');
  assert.equal(config.resumeGraceMs, 2000, 'the flag over the environment');
  assert.deepEqual(config.listen, ['unix:///tmp/a.sock', '127.0.0.1:7000']);
});

test('a bad value, wherever it comes from, stops the broker before it starts, naming the setting', async () => {
  const file = path.join(tempDir(), 'broker.json');
  const fails = async (args: string[], env: NodeJS.ProcessEnv, pattern: RegExp) => {
    await assert.rejects(run(process.execPath, [CLI, 'serve', ...args], { env: { ...process.env, ...env } }), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr, pattern);
      return true;
    });
  };
  fs.writeFileSync(file, JSON.stringify({ 'session-buffer': 'lots' }));
  await fails(['--config', file], {}, /invalid "session-buffer" in .*broker\.json "lots": a size of at least 1024 bytes/);
  fs.writeFileSync(file, JSON.stringify({ 'sesion-buffer': '1MiB' }));
  await fails(['--config', file], {}, /invalid key "sesion-buffer" .*not a setting; known: listen, ffi-lib/);
  await fails([], { LIVEKIT_FFI_BROKER_MAX_REQUEST_RATE: '-5' }, /invalid LIVEKIT_FFI_BROKER_MAX_REQUEST_RATE "-5": a whole number >= 0/);
  await fails(['--tls-cert', file], {}, /--tls-cert\/--tls-key .*both, or neither/);
});

test('auth tokens: a Hello without the token or with a wrong one is refused UNAUTHENTICATED, the same way', async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'a.token'), 'first-token-0123456789\n');
  fs.writeFileSync(path.join(dir, 'b.token'), 'second-token-0123456789\n');
  const broker = await startBroker(['--auth-token-file', path.join(dir, 'a.token'), '--auth-token-file', path.join(dir, 'b.token')]);
  try {
    const refusals: string[] = [];
    for (const authToken of [undefined, 'first-token-01234567', 'nope']) {
      await assert.rejects(BrokerClient.connect(broker.address, { authToken }), (err: unknown) => {
        assert.ok(err instanceof BrokerError);
        assert.equal(err.grpcCode, grpc.status.UNAUTHENTICATED);
        refusals.push(err.detail);
        return true;
      });
    }
    assert.equal(new Set(refusals).size, 1, 'every failure reads the same');
    for (const authToken of ['first-token-0123456789', 'second-token-0123456789']) {
      const client = await BrokerClient.connect(broker.address, { authToken });
      await client.request(newSource());
      await client.close();
    }
  } finally {
    await broker.stop();
  }
});

test('TLS on TCP, and mTLS with --tls-client-ca: plaintext and certificate-less clients are turned away', async () => {
  const dir = tempDir();
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=test-ca', '-keyout', 'ca.key', '-out', 'ca.pem');
  for (const name of ['server', 'client']) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    fs.writeFileSync(path.join(dir, `${name}.ext`), name === 'server' ? 'subjectAltName=IP:127.0.0.1\n' : 'extendedKeyUsage=clientAuth\n');
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
  }
  const read = (f: string) => fs.readFileSync(path.join(dir, f));
  const broker = await startBroker(['--tls-cert', path.join(dir, 'server.pem'), '--tls-key', path.join(dir, 'server.key'), '--tls-client-ca', path.join(dir, 'ca.pem')], {}, '127.0.0.1:0');
  try {
    const mtls = grpc.credentials.createSsl(read('ca.pem'), read('client.key'), read('client.pem'));
    const client = await BrokerClient.connect(broker.address, { credentials: mtls, connectTimeoutMs: 5000 });
    await client.request(newSource());
    await client.close();
    await assert.rejects(BrokerClient.connect(broker.address, { connectTimeoutMs: 2000 }), BrokerError, 'plaintext');
    await assert.rejects(BrokerClient.connect(broker.address, { credentials: grpc.credentials.createSsl(read('ca.pem')), connectTimeoutMs: 2000 }), BrokerError, 'no client certificate');
  } finally {
    await broker.stop();
  }
});

test('the socket file gets --socket-mode and --socket-group', async () => {
  const gid = process.getgid!();
  const broker = await startBroker(['--socket-mode', '600', '--socket-group', String(gid)]);
  try {
    const stat = fs.statSync(broker.socketPath);
    assert.equal((stat.mode & 0o777).toString(8), '600');
    assert.equal(stat.gid, gid);
  } finally {
    await broker.stop();
  }
});

test('per-session limits: --max-handles and --max-request-rate answer RESOURCE_EXHAUSTED to that session only', async () => {
  const broker = await startBroker(['--max-handles', '2', '--max-request-rate', '50']);
  try {
    const greedy = await BrokerClient.connect(broker.address);
    const other = await BrokerClient.connect(broker.address);
    await greedy.request(newSource());
    await greedy.request(newSource());
    await assert.rejects(greedy.request(newSource()), (err: unknown) => err instanceof BrokerError && err.code === Error_Code.RESOURCE_EXHAUSTED && /--max-handles/.test(err.message));
    const results = await Promise.allSettled(Array.from({ length: 200 }, () => greedy.request(newSource())));
    const tooFast = results.filter((r) => r.status === 'rejected' && /--max-request-rate/.test(String(r.reason))).length;
    assert.ok(tooFast >= 100, `${tooFast} of 200 back-to-back requests refused for the rate`);
    await other.request(newSource());
    await greedy.close();
    await other.close();
  } finally {
    await broker.stop();
  }
});
