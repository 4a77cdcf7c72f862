#!/usr/bin/env node
// Generates proto/gen/ from proto/*.proto with buf and protoc-gen-es (both from npm, no system protoc).
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const bin = path.join(root, 'node_modules', '.bin');
execFileSync(path.join(bin, 'buf'), ['generate'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH}` },
});
