// The container image, checked without a Docker engine: the Dockerfile against the README and the
// tree, then the runtime stage's file layout rebuilt from this `npm install` tree (node_modules
// copied without the devDependencies, as `npm prune --omit=dev` leaves it) under a temporary
// directory that stands for the container's root, where its ENTRYPOINT serves and its HEALTHCHECK
// passes, then fails once SIGTERM stopped the broker.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { withTimeout } from './helpers/processes.js';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

// --- Dockerfile parsing: instructions, continuation lines, comments, stages ---

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  image: string;
  platform: string | undefined;
  name: string | undefined;
  instructions: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    if (/^\s*#/.test(raw)) return; // comments and parser directives, also inside a continuation
    if (raw.trim() === '' && pending === '') return;
    if (pending === '') start = i + 1;
    if (/\\\s*$/.test(raw)) {
      pending += raw.replace(/\\\s*$/, ' ');
      return;
    }
    const full = pending + raw;
    pending = '';
    const m = /^\s*([A-Za-z]+)\s*([\s\S]*)$/.exec(full);
    assert.ok(m, `Dockerfile line ${start}: not an instruction: ${full}`);
    instructions.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start });
  });
  assert.equal(pending, '', 'Dockerfile ends inside a continuation line');

  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const { flags, rest } = splitFlags(ins.args);
      const [image, as, name] = rest.split(/\s+/);
      assert.ok(image !== undefined && (as === undefined || as.toUpperCase() === 'AS'), `Dockerfile line ${ins.line}: FROM ${ins.args}`);
      stages.push({ image, platform: flags.platform, name, instructions: [] });
    } else {
      assert.ok(stages.length > 0 || ins.keyword === 'ARG', `Dockerfile line ${ins.line}: ${ins.keyword} before FROM`);
      stages.at(-1)?.instructions.push(ins);
    }
  }
  return stages;
}

/** Leading --name=value flags of an instruction, and what follows them. */
function splitFlags(args: string): { flags: Record<string, string>; rest: string } {
  const flags: Record<string, string> = {};
  let rest = args;
  for (let m; (m = /^--([\w-]+)=(\S+)\s*/.exec(rest)); rest = rest.slice(m[0].length)) flags[m[1]!] = m[2]!;
  return { flags, rest };
}

/** Exec form (a JSON array) as it is; shell form as `sh -c`. */
function commandOf(args: string): string[] {
  if (args.startsWith('[')) return JSON.parse(args) as string[];
  return ['/bin/sh', '-c', args];
}

function all(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

function last(stage: Stage, keyword: string): Instruction {
  const found = all(stage, keyword).at(-1);
  assert.ok(found, `the ${stage.name ?? stage.image} stage has no ${keyword}`);
  return found;
}

/** The shell commands of the README's sh code blocks, split at &&, comments removed. */
function documentedCommands(readme: string): Set<string> {
  const commands = new Set<string>();
  for (const block of readme.matchAll(/^```(?:sh|bash|shell)[ \t]*\n([\s\S]*?)^```/gm)) {
    for (const line of block[1]!.split('\n')) {
      for (const part of line.replace(/(^|\s)#.*$/, '').split('&&')) {
        const command = normalize(part);
        if (command !== '') commands.add(command);
      }
    }
  }
  return commands;
}

const normalize = (command: string) => command.trim().replace(/\s+/g, ' ');

const dockerfile = parseDockerfile(fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
const buildStage = dockerfile[0]!;
const runtime = dockerfile.at(-1)!;
const pluginStage = dockerfile.find((stage) => stage.name === 'audio-plugins');
// build/audio-plugins: scripts/python-venvs.sh installs the Dockerfile's default AUDIO_PLUGINS there.
const HOST_PLUGINS = path.join(ROOT, 'build', 'audio-plugins');

/** The audio-plugins stage: its default AUDIO_PLUGINS and the directory its RUN installs them into. */
function pluginStageLayout(): { defaults: string[]; dir: string } {
  assert.ok(pluginStage, 'an audio-plugins stage');
  const arg = /^AUDIO_PLUGINS="(.*)"$/.exec(last(pluginStage, 'ARG').args);
  assert.ok(arg, 'ARG AUDIO_PLUGINS="NAME==VERSION ..." (the default releases)');
  const run = /install-audio-plugins\.sh (\S+) \$AUDIO_PLUGINS$/.exec(last(pluginStage, 'RUN').args);
  assert.ok(run, 'the audio-plugins stage runs install-audio-plugins.sh DIR $AUDIO_PLUGINS');
  return { defaults: arg[1]!.split(/\s+/).filter(Boolean), dir: run[1]! };
}

/** ENTRYPOINT then CMD, both exec form, as the container runs them. */
function entrypointCommand(): string[] {
  const entrypoint = last(runtime, 'ENTRYPOINT');
  assert.ok(entrypoint.args.startsWith('['), 'ENTRYPOINT in exec form, so that the broker is PID 1 and gets SIGTERM');
  const cmd = all(runtime, 'CMD').at(-1);
  return [...commandOf(entrypoint.args), ...(cmd === undefined ? [] : commandOf(cmd.args))];
}

function healthcheckCommand(): { flags: Record<string, string>; command: string[] } {
  const { flags, rest } = splitFlags(last(runtime, 'HEALTHCHECK').args);
  const m = /^CMD\s+([\s\S]+)$/.exec(rest);
  assert.ok(m, `HEALTHCHECK ${rest}: expected CMD`);
  return { flags, command: commandOf(m[1]!) };
}

function volumes(): string[] {
  return all(runtime, 'VOLUME').flatMap((v) => (v.args.startsWith('[') ? (JSON.parse(v.args) as string[]) : v.args.split(/\s+/)));
}

function workdir(stage: Stage): string {
  return last(stage, 'WORKDIR').args;
}

// --- the Dockerfile against the README and the tree ---

test('every RUN step of the Dockerfile is a command the README documents', () => {
  const documented = documentedCommands(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
  const steps = dockerfile.flatMap((stage) => all(stage, 'RUN'));
  assert.ok(steps.length > 0);
  const undocumented = steps
    .flatMap((step) => (step.args.startsWith('[') ? [(JSON.parse(step.args) as string[]).join(' ')] : step.args.split('&&')).map((c) => ({ line: step.line, command: normalize(c) })))
    .filter(({ command }) => !documented.has(command));
  assert.deepEqual(
    undocumented,
    [],
    `RUN commands the README does not document (in a sh code block): ${undocumented.map((u) => `line ${u.line}: ${u.command}`).join('; ')}`,
  );
  assert.ok(all(buildStage, 'RUN').some((r) => normalize(r.args) === 'npm install'), 'the build stage builds with npm install, as the README does');
});

test('stages: node 20 bookworm to build, bookworm-slim to run, both linux/amd64 (the library package is x64 only)', () => {
  assert.ok(dockerfile.length >= 2, 'a multi-stage build');
  assert.equal(buildStage.image, 'node:20-bookworm');
  assert.equal(runtime.image, 'node:20-bookworm-slim');
  for (const stage of dockerfile) assert.equal(stage.platform, 'linux/amd64', `${stage.image}: --platform=linux/amd64`);
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  assert.ok(pkg.dependencies['@livekit/rtc-ffi-bindings-linux-x64-gnu'], 'the library comes from the x64 npm package');
  const libraryManifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules/@livekit/rtc-ffi-bindings-linux-x64-gnu/package.json'), 'utf8'));
  assert.deepEqual(libraryManifest.cpu, ['x64']);
  assert.ok(
    all(runtime, 'COPY').every((c) => [buildStage.name, pluginStage?.name].includes(splitFlags(c.args).flags.from)),
    'the runtime stage copies only from the build and audio-plugins stages',
  );
});

test('the audio-plugins stage installs the AUDIO_PLUGINS releases, by default the noise cancellation the agent templates import, and the entrypoint allows them', () => {
  const { defaults, dir } = pluginStageLayout();
  assert.deepEqual(defaults, ['livekit-plugins-noise-cancellation==0.3.2']);
  assert.match(pluginStage!.image, /^python:3\.\d+-slim-bookworm$/, 'pip, on the runtime image\'s Debian');
  const copy = all(runtime, 'COPY').find((c) => splitFlags(c.args).flags.from === pluginStage!.name);
  assert.ok(copy, 'the runtime stage copies the plugin packages');
  const [source, dest] = splitFlags(copy.args).rest.split(/\s+/);
  assert.equal(source, dir);
  const command = entrypointCommand();
  assert.equal(command[command.indexOf('--allow-audio-plugins') + 1], path.posix.resolve(workdir(runtime), dest!), 'ENTRYPOINT --allow-audio-plugins names the copied directory');
  // The tests' copy (build/audio-plugins) holds the same releases as the image's default.
  const installed = fs.readdirSync(HOST_PLUGINS).flatMap((name) => fs.readdirSync(path.join(HOST_PLUGINS, name)).map((version) => `${name}==${version}`));
  assert.deepEqual(installed.sort(), [...defaults].sort(), `${HOST_PLUGINS} (scripts/python-venvs.sh) holds the Dockerfile's default AUDIO_PLUGINS`);
});

test('the runtime stage runs as a non-root user, keeps the socket in a VOLUME, and its HEALTHCHECK is the CLI info on the entrypoint socket', () => {
  const user = last(runtime, 'USER').args;
  assert.ok(!/^(root|0)(:.*)?$/.test(user), `USER ${user} is root`);
  assert.ok(
    runtime.instructions.indexOf(last(runtime, 'USER')) > runtime.instructions.indexOf(all(runtime, 'RUN').at(-1)!),
    'USER comes after the last RUN (which runs as root to create the socket directory)',
  );

  const command = entrypointCommand();
  const listens = command.flatMap((arg, i) => (command[i - 1] === '--listen' ? [arg] : []));
  assert.equal(command[0], 'node');
  assert.equal(command[2], 'serve');
  assert.equal(listens.length, 1, 'one --listen');
  const address = listens[0]!;
  assert.match(address, /^unix:\/\/\//);
  const socketDir = path.posix.dirname(address.slice('unix://'.length));
  assert.ok(volumes().includes(socketDir), `VOLUME ${socketDir} (the socket's directory); have ${volumes().join(', ')}`);
  assert.ok(
    all(runtime, 'RUN').some((r) => r.args.includes(socketDir) && /\bnode\b/.test(r.args)),
    `the socket directory ${socketDir} is created for the node user before the VOLUME`,
  );

  const health = healthcheckCommand();
  assert.deepEqual(health.command, [command[0], command[1], 'info', '--address', address], 'HEALTHCHECK: the same CLI, info, the entrypoint socket');
  for (const flag of ['interval', 'timeout', 'start-period', 'retries']) assert.ok(flag in health.flags, `HEALTHCHECK --${flag}`);
});

test('the build context: .dockerignore keeps host build output out and every build input in', () => {
  const patterns = fs
    .readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  assert.ok(!patterns.some((p) => p.startsWith('!')), 'no exceptions (the matcher below does not know them)');
  // Docker's matching, as far as these patterns need: * and ? within a name, **/ any directories,
  // and a match on a directory covers what is inside it.
  const toRegExp = (pattern: string) => {
    const p = pattern.replace(/^\//, '');
    let re = '';
    for (let i = 0; i < p.length; i++) {
      if (p.startsWith('**/', i)) {
        re += '(?:.*/)?';
        i += 2;
      } else if (p.startsWith('**', i)) {
        re += '.*';
        i += 1;
      } else if (p[i] === '*') re += '[^/]*';
      else if (p[i] === '?') re += '[^/]';
      else re += p[i]!.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    return new RegExp(`^${re}(?:/.*)?$`);
  };
  const ignored = (file: string) => patterns.some((p) => toRegExp(p).test(file));

  for (const output of ['node_modules', 'dist', 'build', 'proto/gen', 'node_modules/koffi/package.json', 'dist/broker/cli.js', 'client/python/x/__pycache__/y.pyc']) {
    assert.ok(ignored(output), `.dockerignore must keep ${output} (host build output) out of the context`);
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const scripts = [...String(pkg.scripts.build).matchAll(/node (scripts\/\S+)/g)].map((m) => m[1]!);
  assert.ok(scripts.length > 0);
  const inputs = ['package.json', 'package-lock.json', 'tsconfig.json', 'buf.gen.yaml', ...scripts, 'broker/native/callback_queue.c', 'broker/cli.ts', 'client/index.ts', 'proto/ffi_broker.proto', 'proto/pointer_fields.json', 'proto/package_file_fields.json', 'proto/service.ts', 'scripts/install-audio-plugins.sh'];
  for (const input of inputs) {
    assert.ok(fs.existsSync(path.join(ROOT, input)), `${input} exists`);
    assert.ok(!ignored(input), `.dockerignore must not exclude ${input}, a build input`);
  }
  const copies = all(buildStage, 'COPY').map((c) => splitFlags(c.args).rest.split(/\s+/));
  for (const sources of copies.map((args) => args.slice(0, -1))) {
    for (const source of sources) assert.ok(fs.existsSync(path.join(ROOT, source)), `build stage COPY ${source}: not in the tree`);
  }
  assert.ok(
    all(buildStage, 'COPY').at(0)!.line < all(buildStage, 'RUN').at(0)!.line,
    'the build stage copies the sources before npm install (its prepare script builds them)',
  );
});

// --- the runtime stage, rebuilt from this tree and run ---

/** Paths (under node_modules) of the packages `npm prune --omit=dev` removes, from npm's own record. */
function devPackages(): Set<string> {
  const hidden = path.join(ROOT, 'node_modules', '.package-lock.json');
  const lock = JSON.parse(fs.readFileSync(fs.existsSync(hidden) ? hidden : path.join(ROOT, 'package-lock.json'), 'utf8'));
  return new Set(Object.entries(lock.packages as Record<string, { dev?: boolean }>).flatMap(([key, value]) => (value.dev === true ? [key] : [])));
}

/**
 * Copies what the runtime stage's COPY --from=build instructions copy, the build stage's WORKDIR
 * being this tree (after `npm install`) and `root` the container's file system; node_modules
 * without its dev packages (and their .bin links).
 */
function rebuildRuntimeLayout(root: string): void {
  const buildDir = workdir(buildStage);
  const runDir = workdir(runtime);
  const dev = devPackages();
  const fromBuild = (p: string) => {
    const inBuild = path.posix.resolve(buildDir, p);
    assert.ok(inBuild === buildDir || inBuild.startsWith(`${buildDir}/`), `COPY --from=build ${p}: outside ${buildDir}`);
    return path.join(ROOT, path.posix.relative(buildDir, inBuild));
  };
  const keep = (source: string) => {
    const rel = path.relative(ROOT, source).split(path.sep).join('/');
    if (dev.has(rel)) return false;
    if (/(^|\/)node_modules\/\.bin\/[^/]+$/.test(rel) && fs.lstatSync(source).isSymbolicLink()) {
      const target = path.relative(ROOT, path.resolve(path.dirname(source), fs.readlinkSync(source))).split(path.sep).join('/');
      return ![...dev].some((d) => target === d || target.startsWith(`${d}/`));
    }
    return true;
  };
  for (const copy of all(runtime, 'COPY')) {
    const args = splitFlags(copy.args).rest.split(/\s+/);
    const dest = args.at(-1)!;
    const sources = args.slice(0, -1);
    const target = path.join(root, path.posix.resolve(runDir, dest));
    if (splitFlags(copy.args).flags.from === pluginStage?.name) {
      // The stage's install, as scripts/python-venvs.sh made it with the same script and releases;
      // linked, not copied (about 170 MB of plugin and models).
      assert.deepEqual(sources, [pluginStageLayout().dir]);
      assert.ok(fs.existsSync(HOST_PLUGINS), `${HOST_PLUGINS} is missing: run scripts/python-venvs.sh`);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.symlinkSync(HOST_PLUGINS, target);
      continue;
    }
    for (const source of sources) {
      const from = fromBuild(source);
      assert.ok(fs.existsSync(from), `Dockerfile line ${copy.line}: COPY --from=build ${source}: ${path.relative(ROOT, from)} is not in the npm install tree`);
      if (fs.statSync(from).isDirectory()) {
        fs.cpSync(from, target, { recursive: true, verbatimSymlinks: true, filter: keep });
      } else {
        const file = dest.endsWith('/') || sources.length > 1 ? path.join(target, path.basename(from)) : target;
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.copyFileSync(from, file);
      }
    }
  }
  // RUN install -d ... creates the socket directory in the image.
  for (const dir of volumes()) fs.mkdirSync(path.join(root, dir), { recursive: true });
}

/** Files the broker reads through its package root, by path.join(packageRoot | nativeBuildDir, 'literal', ...). */
function packageFilesRead(): string[] {
  const files = new Set<string>();
  const walk = (dir: string): string[] =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) return e.name === 'python' || e.name === 'gen' ? [] : walk(p);
      return e.name.endsWith('.ts') ? [p] : [];
    });
  for (const file of ['broker', 'client', 'proto'].flatMap((d) => walk(path.join(ROOT, d)))) {
    for (const m of fs.readFileSync(file, 'utf8').matchAll(/path\.join\(\s*(packageRoot|nativeBuildDir)\s*,([^)]*)\)/g)) {
      const parts = m[2]!.split(',').map((s) => s.trim());
      if (!parts.every((s) => /^'[^']*'$|^"[^"]*"$/.test(s))) continue;
      files.add([...(m[1] === 'nativeBuildDir' ? ['build', 'native'] : []), ...parts.map((s) => s.slice(1, -1))].join('/'));
    }
  }
  return [...files].sort();
}

/** A container command with container paths under `root`: node is this node, /x is root/x, unix:///x is unix://root/x. */
function onHost(command: string[], root: string): string[] {
  return command.map((arg, i) => {
    if (i === 0 && arg === 'node') return process.execPath;
    if (arg.startsWith('unix:///')) return `unix://${path.join(root, arg.slice('unix://'.length))}`;
    if (arg.startsWith('/')) return path.join(root, arg);
    return arg;
  });
}

function runtimeEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  for (const e of all(runtime, 'ENV')) {
    const m = /^([\w.-]+)[=\s](.*)$/.exec(e.args);
    assert.ok(m, `ENV ${e.args}: expected NAME=value`);
    env[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1');
  }
  return env;
}

test('the runtime layout from a fresh npm install tree without devDependencies: ENTRYPOINT serves, HEALTHCHECK passes, SIGTERM exits 0, HEALTHCHECK then fails', async () => {
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'lkb-container-')));
  let broker: ReturnType<typeof spawn> | undefined;
  try {
    rebuildRuntimeLayout(root);
    const app = path.join(root, workdir(runtime));
    const read = packageFilesRead();
    for (const expected of ['package.json', 'proto/ffi_broker.proto', 'proto/pointer_fields.json', 'proto/package_file_fields.json', 'build/native/liblkq_callback_queue.so', 'build/native/liblkb_media_lane.so']) {
      assert.ok(read.includes(expected), `the source scan finds ${expected} (found ${read.join(', ')})`);
    }
    for (const file of read) assert.ok(fs.existsSync(path.join(app, file)), `the broker reads ${file}; the runtime stage does not COPY it`);
    assert.ok(!fs.existsSync(path.join(app, 'node_modules', 'typescript')), 'devDependencies are left out');

    const env = runtimeEnv();
    const entrypoint = entrypointCommand();
    const [exe, ...args] = onHost(entrypoint, root);
    const health = onHost(healthcheckCommand().command, root);
    const socketPath = path.join(root, entrypoint[entrypoint.indexOf('--listen') + 1]!.slice('unix://'.length));

    broker = spawn(exe!, args, { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = broker;
    let stderr = '';
    proc.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    let pluginPackages: unknown;
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        readline.createInterface({ input: proc.stdout! }).on('line', (line) => {
          try {
            const record = JSON.parse(line);
            if (record.packages !== undefined) pluginPackages = record.packages;
            if (record.msg === 'listening') resolve();
          } catch {
            // not a log record
          }
        });
        void exited.then((code) => reject(new Error(`the entrypoint exited (${code}) before listening: ${stderr}`)));
      }),
      10000,
      'the entrypoint did not log "listening" within 10 s',
    );
    assert.equal((fs.statSync(socketPath).mode & 0o777).toString(8), '660');
    assert.deepEqual(pluginPackages, pluginStageLayout().defaults, 'the entrypoint serves the plugin packages of the image');

    const healthy = await run(health[0]!, health.slice(1), { cwd: app, env });
    assert.match(healthy.stdout, /^broker \d+\.\d+\.\d+\S*\s+liblivekit_ffi 0\.12\.75/);
    const info = JSON.parse((await run(health[0]!, [...health.slice(1), '--json'], { cwd: app, env })).stdout);
    assert.ok(
      String(info.ffiLibrary).startsWith(path.join(app, 'node_modules') + path.sep),
      `liblivekit_ffi is loaded from the layout's node_modules, not this tree's: ${info.ffiLibrary}`,
    );

    proc.kill('SIGTERM');
    assert.equal(await withTimeout(exited, 10000, 'no exit within 10 s of SIGTERM'), 0, `exit code after SIGTERM; stderr: ${stderr}`);
    assert.equal(fs.existsSync(socketPath), false, 'the socket file is removed');
    await assert.rejects(run(health[0]!, health.slice(1), { cwd: app, env }), (err: { code: number }) => {
      assert.notEqual(err.code, 0);
      return true;
    });
  } finally {
    if (broker !== undefined && broker.exitCode === null && broker.signalCode === null) broker.kill('SIGKILL');
    fs.rmSync(root, { recursive: true, force: true });
  }
});
