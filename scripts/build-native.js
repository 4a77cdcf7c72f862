#!/usr/bin/env node
// Builds the product's C (the native callback queue, and the media lane's sealed shared memory)
// and, when present, the test fixture stress library, with the machine's C compiler (CC, else cc).
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'build', 'native');
fs.mkdirSync(out, { recursive: true });
const cc = process.env.CC || 'cc';

const targets = [
  { src: 'broker/native/callback_queue.c', lib: 'liblkq_callback_queue.so', libs: [] },
  { src: 'broker/native/media_lane.c', lib: 'liblkb_media_lane.so', libs: [] },
  { src: 'test/fixtures/stress_ffi.c', lib: 'libstress_ffi.so', libs: ['-lpthread'], optional: true },
];

for (const t of targets) {
  const src = path.join(root, t.src);
  if (t.optional && !fs.existsSync(src)) continue;
  const args = ['-std=c11', '-O2', '-g', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-o', path.join(out, t.lib), src, ...t.libs];
  try {
    execFileSync(cc, args, { stdio: 'inherit' });
  } catch (err) {
    console.error(`build-native: "${cc} ${args.join(' ')}" failed. Install a C compiler (apt-get install gcc) or set CC.`);
    process.exit(1);
  }
}
