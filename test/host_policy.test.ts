// Requests that touch the broker's host are refused unless the operator allowed them, with a
// message naming the flag; allowed ones reach the library only for paths inside the named
// directories, with symlinks and `..` resolved.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetAudioDevicesRequest, LoadAudioFilterPluginRequest, NewAudioResamplerRequest, NewPlatformAudioRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { ByteStreamReaderWriteToFileRequest, StreamSendFileRequest } from '@livekit/rtc-ffi-bindings/proto/data_stream_pb.js';
import { BrokerClient } from '../client/broker_client.js';
import { BrokerError } from '../client/broker_error.js';
import { Error_Code } from '../proto/gen/ffi_broker_pb.js';
import { startBroker, tempDir, type BrokerProcess } from './helpers/processes.js';
import { ffi } from './helpers/assertions.js';


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
    await refusedWith(client.request(ffi({ case: 'loadAudioFilterPlugin', value: new LoadAudioFilterPluginRequest({ pluginPath: '/tmp/x.so', dependencies: [], moduleId: 'm' }) })), '--allow-audio-plugins');
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
    pluginDir = tempDir('lkb-plugins-');
    sharedDir = tempDir('lkb-shared-');
    fs.writeFileSync(path.join(sharedDir, 'hello.txt'), 'hello');
    fs.symlinkSync('/etc', path.join(sharedDir, 'escape'));
    fs.writeFileSync(path.join(pluginDir, 'not-a-plugin.so'), 'not ELF');
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

  test('a plugin inside --allow-audio-plugins reaches the library; outside, or via .., is refused', async () => {
    const answer = await reachedLibrary(client.request(ffi({ case: 'loadAudioFilterPlugin', value: new LoadAudioFilterPluginRequest({ pluginPath: path.join(pluginDir, 'not-a-plugin.so'), dependencies: [], moduleId: 'm' }) })));
    assert.match(answer, /not-a-plugin\.so/, 'the library tried to load the file');
    await refusedWith(client.request(ffi({ case: 'loadAudioFilterPlugin', value: new LoadAudioFilterPluginRequest({ pluginPath: path.join(pluginDir, '..', 'x.so'), dependencies: [], moduleId: 'm' }) })), '--allow-audio-plugins', /resolves outside/);
    await refusedWith(
      client.request(ffi({ case: 'loadAudioFilterPlugin', value: new LoadAudioFilterPluginRequest({ pluginPath: path.join(pluginDir, 'not-a-plugin.so'), dependencies: ['/usr/lib/libevil.so'], moduleId: 'm' }) })),
      '--allow-audio-plugins',
      /libevil\.so, which resolves outside/,
    );
    await refusedWith(client.request(ffi({ case: 'loadAudioFilterPlugin', value: new LoadAudioFilterPluginRequest({ pluginPath: 'relative.so', dependencies: [], moduleId: 'm' }) })), '--allow-audio-plugins', /not absolute/);
  });

  test('files inside --shared-dir reach the library; a symlink or .. out of it is refused', async () => {
    await reachedLibrary(client.request(ffi({ case: 'sendFile', value: new StreamSendFileRequest({ localParticipantHandle: ownedHandle, filePath: path.join(sharedDir, 'hello.txt'), options: { topic: 't' } }) })));
    await reachedLibrary(client.request(ffi({ case: 'byteWriteToFile', value: new ByteStreamReaderWriteToFileRequest({ readerHandle: ownedHandle, directory: sharedDir, nameOverride: 'out.bin' }) })));
    await refusedWith(client.request(ffi({ case: 'sendFile', value: new StreamSendFileRequest({ localParticipantHandle: ownedHandle, filePath: path.join(sharedDir, 'escape', 'passwd'), options: { topic: 't' } }) })), '--shared-dir', /resolves outside/);
    await refusedWith(client.request(ffi({ case: 'sendFile', value: new StreamSendFileRequest({ localParticipantHandle: ownedHandle, filePath: path.join(sharedDir, '..', 'x'), options: { topic: 't' } }) })), '--shared-dir', /resolves outside/);
    await refusedWith(client.request(ffi({ case: 'byteWriteToFile', value: new ByteStreamReaderWriteToFileRequest({ readerHandle: ownedHandle, directory: path.join(sharedDir, 'escape') }) })), '--shared-dir', /resolves outside/);
    await refusedWith(client.request(ffi({ case: 'byteWriteToFile', value: new ByteStreamReaderWriteToFileRequest({ readerHandle: ownedHandle, directory: sharedDir, nameOverride: '../x' }) })), '--shared-dir', /not a plain file name/);
    await refusedWith(client.request(ffi({ case: 'byteWriteToFile', value: new ByteStreamReaderWriteToFileRequest({ readerHandle: ownedHandle }) })), '--shared-dir', /set directory/);
  });

  test('platform audio reaches the library with --allow-platform-audio', async () => {
    const answer = await reachedLibrary(client.request(ffi({ case: 'newPlatformAudio', value: new NewPlatformAudioRequest({}) })));
    assert.match(answer, /newPlatformAudio/);
  });

  test('a flag naming a missing directory is refused at start, naming the flag', async () => {
    await assert.rejects(startBroker(['--shared-dir', path.join(sharedDir, 'missing')]), /invalid --shared-dir .*an existing directory/);
  });
});
