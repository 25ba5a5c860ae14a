#!/usr/bin/env node
// Builds the native addon into build/Release/lowcomms.node with cmake alone: the install
// script's fallback when no prebuild fits, so a user's install needs no cmake-js (a
// devDependency, for the debug, sanitizer and cross builds). It passes what cmake-js
// would: the Node-API headers (node-api-headers) and node-addon-api as CMAKE_JS_INC.
// Needs cmake and a C++ compiler. usage: node scripts/build-addon.mjs
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const require = createRequire(path.join(root, 'package.json'));
const include = [require('node-api-headers').include_dir, path.dirname(require.resolve('node-addon-api/napi.h'))];
const build = path.join(root, 'build');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root });
  if (r.error) {
    console.error(`build-addon: cannot run ${cmd}: ${r.error.message} (building lowcomms from source needs cmake and a C++ compiler)`);
    process.exit(1);
  }
  if (r.status !== 0) process.exit(r.status ?? 1);
}

// Ninja when present, as cmake-js chooses: a build/ made by one is reused by the other.
const ninja = spawnSync('ninja', ['--version'], { stdio: 'ignore' }).status === 0;
run('cmake', [
  '-S', root,
  '-B', build,
  ...(ninja ? ['-G', 'Ninja'] : []),
  '-DCMAKE_BUILD_TYPE=Release',
  `-DCMAKE_JS_INC=${include.join(';')}`,
  `-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${path.join(build, 'Release')}`,
  '-DCMAKE_CXX_FLAGS=-DBUILDING_NODE_EXTENSION',
]);
run('cmake', ['--build', build, '--parallel']);
