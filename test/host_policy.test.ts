// Requests that touch the broker's host are refused unless the operator allowed them, with a
// message naming the flag; allowed ones reach the library only for paths inside the named
// directories, with symlinks and `..` resolved. Audio filter plugins and their model files are
// the broker's own copies of the package release the worker names, never the worker's path.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AudioStreamFromParticipantRequest, AudioStreamType, GetAudioDevicesRequest, LoadAudioFilterPluginRequest, NewAudioResamplerRequest, NewAudioStreamRequest, NewPlatformAudioRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { ByteStreamReaderWriteToFileRequest, StreamSendFileRequest } from '@livekit/rtc-ffi-bindings/proto/data_stream_pb.js';
import { BrokerClient, type PackageFileInit } from '../client/broker_client.js';
import { BrokerError } from '../client/broker_error.js';
import { Error_Code } from '../proto/gen/ffi_broker_pb.js';
import { startBroker, tempDir, type BrokerProcess } from './helpers/processes.js';
import { ffi } from './helpers/assertions.js';


// A worker's view: the plugin in its own site-packages, which the broker's host does not have.
const WORKER_SITE = '/worker/site-packages';
const workerFile = (file: string, distribution = 'fake-plugin', version = '1.0.0'): PackageFileInit => ({ path: `${WORKER_SITE}/${file}`, distribution, version, file });
const loadPlugin = (pluginPath: string, dependencies: string[] = []) =>
  ffi({ case: 'loadAudioFilterPlugin', value: new LoadAudioFilterPluginRequest({ pluginPath, dependencies, moduleId: 'm' }) });

async function refusedWith(promise: Promise<unknown>, flag: string, reason?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof BrokerError, String(err));
    assert.equal(err.code, Error_Code.PERMISSION_DENIED, err.message);
    assert.ok(err.message.includes(flag), `"${err.message}" names ${flag}`);
    if (reason) assert.match(err.message, reason);
    return true;
  });
}

/** The request got past the policy: the library itself answered (an error of its own or FFI_ERROR). */
async function reachedLibrary(promise: Promise<{ response: { toJson(): unknown } }>): Promise<string> {
  try {
    return JSON.stringify((await promise).response.toJson());
  } catch (err) {
    assert.ok(err instanceof BrokerError && err.code === Error_Code.FFI_ERROR, `expected the library's answer, got ${String(err)}`);
    return err.message;
  }
}

describe('host policy: nothing allowed (the default)', () => {
  let broker: BrokerProcess;
  let client: BrokerClient;
  before(async () => {
    broker = await startBroker();
    client = await BrokerClient.connect(broker.address);
  });
  after(async () => {
    await client.close();
    await broker.stop();
  });

  test('audio filter plugins, files and platform audio are refused, naming the flag', async () => {
    await refusedWith(client.request(loadPlugin('/tmp/x.so')), '--allow-audio-plugins', /does not describe/);
    const plugin = workerFile('fake/plugin.so');
    await refusedWith(client.request(loadPlugin(plugin.path), [], [plugin]), '--allow-audio-plugins', /needs fake-plugin 1\.0\.0, which this broker does not have \(it runs without --allow-audio-plugins DIR\).*AUDIO_PLUGINS="fake-plugin==1\.0\.0"/);
    await refusedWith(client.request(ffi({ case: 'sendFile', value: new StreamSendFileRequest({ localParticipantHandle: 1n, filePath: '/etc/passwd', options: { topic: 't' } }) })), '--shared-dir');
    await refusedWith(client.request(ffi({ case: 'byteWriteToFile', value: new ByteStreamReaderWriteToFileRequest({ readerHandle: 1n, directory: '/tmp' }) })), '--shared-dir');
    await refusedWith(client.request(ffi({ case: 'newPlatformAudio', value: new NewPlatformAudioRequest({}) })), '--allow-platform-audio');
    await refusedWith(client.request(ffi({ case: 'getAudioDevices', value: new GetAudioDevicesRequest({ platformAudioHandle: 1n }) })), '--allow-platform-audio');
  });
});

describe('host policy: directories and platform audio allowed', () => {
  let broker: BrokerProcess;
  let client: BrokerClient;
  let pluginDir: string;
  let sharedDir: string;
  let ownedHandle: bigint;
  before(async () => {
    // The layout scripts/install-audio-plugins.sh makes: DIR/<distribution>/<version>/.
    pluginDir = tempDir('lkb-plugins-');
    const release = path.join(pluginDir, 'fake-plugin', '1.0.0');
    fs.mkdirSync(path.join(release, 'fake_plugin-1.0.0.dist-info'), { recursive: true });
    fs.mkdirSync(path.join(release, 'fake'));
    fs.writeFileSync(path.join(release, 'fake', 'not-a-plugin.so'), 'not ELF');
    fs.writeFileSync(path.join(release, 'fake', 'model.bin'), 'weights');
    fs.symlinkSync('/usr/lib', path.join(release, 'fake', 'escape'));
    const other = path.join(pluginDir, 'other-plugin', '2.0.0');
    fs.mkdirSync(path.join(other, 'other_plugin-2.0.0.dist-info'), { recursive: true });
    fs.writeFileSync(path.join(other, 'other.so'), 'inside DIR, outside the release named');
    sharedDir = tempDir('lkb-shared-');
    fs.writeFileSync(path.join(sharedDir, 'hello.txt'), 'hello');
    fs.symlinkSync('/etc', path.join(sharedDir, 'escape'));
    broker = await startBroker(['--allow-audio-plugins', pluginDir, '--shared-dir', sharedDir, '--allow-platform-audio']);
    client = await BrokerClient.connect(broker.address);
    // A handle this session owns, of the wrong kind: it passes the ownership check, so a request
    // naming it reaches the library, which refuses it on its own terms.
    const { response } = await client.request(ffi({ case: 'newAudioResampler', value: new NewAudioResamplerRequest({}) }));
    assert.equal(response.message.case, 'newAudioResampler');
    ownedHandle = response.message.value.resampler!.handle!.id!;
  });
  after(async () => {
    await client.close();
    await broker.stop();
  });

  test("a plugin of an installed release reaches the library as the broker's copy, whatever path the worker has", async () => {
    const plugin = workerFile('fake/not-a-plugin.so');
    const answer = await reachedLibrary(client.request(loadPlugin(plugin.path), [], [plugin]));
    assert.ok(answer.includes(path.join(fs.realpathSync(pluginDir), 'fake-plugin', '1.0.0', 'fake', 'not-a-plugin.so')), `the library tried the broker's copy: ${answer}`);
    assert.ok(!answer.includes(WORKER_SITE), answer);
    // Names compare as PEP 503 normalizes them.
    const spelled = { ...plugin, distribution: 'Fake_Plugin' };
    assert.ok((await reachedLibrary(client.request(loadPlugin(plugin.path), [], [spelled]))).includes('not-a-plugin.so'));
  });

  test('a package file path the request does not describe, of another release, or missing, is refused', async () => {
    await refusedWith(client.request(loadPlugin(path.join(pluginDir, 'fake-plugin', '1.0.0', 'fake', 'not-a-plugin.so'))), '--allow-audio-plugins', /does not describe/);
    const plugin = workerFile('fake/not-a-plugin.so');
    await refusedWith(client.request(loadPlugin(plugin.path, ['/usr/lib/libevil.so']), [], [plugin]), '--allow-audio-plugins', /dependencies names \/usr\/lib\/libevil\.so/);
    const newer = workerFile('fake/not-a-plugin.so', 'fake-plugin', '2.0.0');
    await refusedWith(client.request(loadPlugin(newer.path), [], [newer]), 'AUDIO_PLUGINS="fake-plugin==2.0.0"', /needs fake-plugin 2\.0\.0, which this broker does not have \(its --allow-audio-plugins DIR holds fake-plugin==1\.0\.0, other-plugin==2\.0\.0\)/);
    const missing = workerFile('fake/other.so');
    await refusedWith(client.request(loadPlugin(missing.path), [], [missing]), 'install-audio-plugins.sh', /has no file "fake\/other\.so"/);
  });

  test('a hostile worker: a file with .., a symlink out of the copy, an absolute file, are refused', async () => {
    const hostile = [
      workerFile('fake/../../../../../etc/passwd'),
      workerFile('../../other-plugin/2.0.0/other.so'), // inside DIR, but in another release
      workerFile('fake/escape/x86_64-linux-gnu/libc.so.6'), // a symlink in the copy that leads out
      workerFile('fake/escape/../../etc/passwd'),
      { ...workerFile('x'), file: '/etc/passwd' },
    ];
    for (const file of hostile) {
      await refusedWith(client.request(loadPlugin(file.path), [], [file]), '', new RegExp(`file "${file.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" of fake-plugin 1\\.0\\.0 resolves outside the broker's copy`));
      const plugin = workerFile('fake/not-a-plugin.so');
      await refusedWith(client.request(loadPlugin(plugin.path, [file.path]), [], [plugin, file]), '', /resolves outside the broker's copy/);
    }
  });

  test('model paths in audio_filter_options are mapped too: undescribed, hostile or not JSON is refused', async () => {
    const stream = (audioFilterOptions: string, fromParticipant = false) =>
      fromParticipant
        ? ffi({ case: 'audioStreamFromParticipant', value: new AudioStreamFromParticipantRequest({ participantHandle: ownedHandle, type: AudioStreamType.AUDIO_STREAM_NATIVE, audioFilterModuleId: 'm', audioFilterOptions }) })
        : ffi({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: ownedHandle, type: AudioStreamType.AUDIO_STREAM_NATIVE, audioFilterModuleId: 'm', audioFilterOptions }) });
    const model = workerFile('fake/model.bin');
    for (const fromParticipant of [false, true]) {
      // Described: the library gets the request (and refuses the wrong kind of handle itself).
      await reachedLibrary(client.request(stream(JSON.stringify({ modelPath: model.path, level: 3 }), fromParticipant), [], [model]));
      await refusedWith(client.request(stream(JSON.stringify({ modelPath: model.path }), fromParticipant)), '--allow-audio-plugins', /audio_filter_options names \/worker\/site-packages\/fake\/model\.bin, which Request\.package_files does not describe/);
      // A path without a separator under a key that says it is one: relative to the broker's cwd.
      await refusedWith(client.request(stream(JSON.stringify({ nested: { modelPath: 'package.json' } }), fromParticipant)), '--allow-audio-plugins', /names package\.json/);
      const hostile = workerFile('fake/escape/x86_64-linux-gnu/libc.so.6');
      await refusedWith(client.request(stream(JSON.stringify({ models: [hostile.path] }), fromParticipant), [], [hostile]), '', /resolves outside the broker's copy/);
      await assert.rejects(client.request(stream('{modelPath: nope', fromParticipant)), (err: unknown) => {
        assert.ok(err instanceof BrokerError && err.code === Error_Code.INVALID_REQUEST, String(err));
        assert.match(err.message, /audio_filter_options is not a JSON document/);
        return true;
      });
    }
  });

  test('files inside --shared-dir reach the library; a symlink or .. out of it is refused', async () => {
    await reachedLibrary(client.request(ffi({ case: 'sendFile', value: new StreamSendFileRequest({ localParticipantHandle: ownedHandle, filePath: path.join(sharedDir, 'hello.txt'), options: { topic: 't' } }) })));
    await reachedLibrary(client.request(ffi({ case: 'byteWriteToFile', value: new ByteStreamReaderWriteToFileRequest({ readerHandle: ownedHandle, directory: sharedDir, nameOverride: 'out.bin' }) })));
    await refusedWith(client.request(ffi({ case: 'sendFile', value: new StreamSendFileRequest({ localParticipantHandle: ownedHandle, filePath: path.join(sharedDir, 'escape', 'passwd'), options: { topic: 't' } }) })), '--shared-dir', /resolves outside/);
    await refusedWith(client.request(ffi({ case: 'sendFile', value: new StreamSendFileRequest({ localParticipantHandle: ownedHandle, filePath: path.join(sharedDir, '..', 'x'), options: { topic: 't' } }) })), '--shared-dir', /resolves outside/);
    // `..` after a symlink goes up from where the symlink led (/etc/..), not back into the directory.
    await refusedWith(client.request(ffi({ case: 'sendFile', value: new StreamSendFileRequest({ localParticipantHandle: ownedHandle, filePath: `${sharedDir}/escape/../hello.txt`, options: { topic: 't' } }) })), '--shared-dir', /resolves outside/);
    await refusedWith(client.request(ffi({ case: 'byteWriteToFile', value: new ByteStreamReaderWriteToFileRequest({ readerHandle: ownedHandle, directory: path.join(sharedDir, 'escape') }) })), '--shared-dir', /resolves outside/);
    await refusedWith(client.request(ffi({ case: 'byteWriteToFile', value: new ByteStreamReaderWriteToFileRequest({ readerHandle: ownedHandle, directory: sharedDir, nameOverride: '../x' }) })), '--shared-dir', /not a plain file name/);
    await refusedWith(client.request(ffi({ case: 'byteWriteToFile', value: new ByteStreamReaderWriteToFileRequest({ readerHandle: ownedHandle }) })), '--shared-dir', /set directory/);
  });

  test('platform audio reaches the library with --allow-platform-audio', async () => {
    const answer = await reachedLibrary(client.request(ffi({ case: 'newPlatformAudio', value: new NewPlatformAudioRequest({}) })));
    assert.match(answer, /newPlatformAudio/);
  });

  test('a flag naming a missing directory, or plugin packages not laid out by release, is refused at start, naming the flag', async () => {
    await assert.rejects(startBroker(['--shared-dir', path.join(sharedDir, 'missing')]), /invalid --shared-dir .*an existing directory/);
    // What --allow-audio-plugins used to take: a directory holding the plugin files themselves.
    const flat = tempDir('lkb-flat-plugins-');
    fs.writeFileSync(path.join(flat, 'liblivekit_nc_plugin.so'), 'x');
    await assert.rejects(startBroker(['--allow-audio-plugins', flat]), /invalid --allow-audio-plugins .*is not a directory named for a distribution.*<distribution>\/<version>/);
    const unversioned = tempDir('lkb-bad-plugins-');
    fs.mkdirSync(path.join(unversioned, 'fake-plugin', '1.0.0', 'fake'), { recursive: true });
    await assert.rejects(startBroker(['--allow-audio-plugins', unversioned]), /invalid --allow-audio-plugins .*holds no dist-info of fake-plugin 1\.0\.0/);
  });
});
