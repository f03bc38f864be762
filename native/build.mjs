#!/usr/bin/env node
/**
 * Builds the native kernels (native/lfusion_native.cc) into native/build/lfusion_native.node with the system C++
 * compiler against Node's local headers: nothing is downloaded (no node-gyp). Run by `npm install`/`npm ci` (the
 * `install` script) and by `npm run build:native`. Never fails: without a compiler, headers or a successful
 * compile it prints one line saying why, exits 0, and the SDK uses its JavaScript kernels.
 *
 *   node native/build.mjs
 *   CXX=clang++ node native/build.mjs              # another compiler
 *   LFUSION_NODE_HEADERS=/opt/node/include/node node native/build.mjs
 *   LFUSION_NATIVE_BUILD=0 npm ci                  # skip the build
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, 'lfusion_native.cc');
const outDir = process.env.LFUSION_NATIVE_OUT ?? join(here, 'build');
const target = join(outDir, 'lfusion_native.node');

const skip = (why) => {
  console.log(`lfusion-stream: native kernels not built (${why}); the JavaScript kernels are used.`);
  process.exit(0);
};

if (process.env.LFUSION_NATIVE_BUILD === '0') skip('LFUSION_NATIVE_BUILD=0');
if (process.platform === 'win32') skip('no build for Windows; see native/build.mjs');
const compiler = process.env.CXX || 'g++';
const probe = spawnSync(compiler, ['--version'], { encoding: 'utf8' });
if (probe.error || probe.status !== 0) skip(`no C++ compiler: ${compiler} not found`);
// Headers next to this Node (official tarballs), then distribution packages (Debian's libnode-dev: /usr/include/node).
const headerDirs = [process.env.LFUSION_NODE_HEADERS, join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node'];
const headers = headerDirs.find((dir) => dir && existsSync(join(dir, 'node_api.h')));
if (!headers) skip(`no Node headers (node_api.h) in ${headerDirs.filter(Boolean).join(', ')}`);

mkdirSync(outDir, { recursive: true });
const partial = `${target}.${process.pid}.tmp`;
// -ffp-contract=off: no fused multiply-add, so the kernels round exactly as the JavaScript ones do.
const flags = ['-O3', '-std=c++17', '-shared', '-fPIC', '-fvisibility=hidden', '-ffp-contract=off', '-DNAPI_VERSION=8', `-I${headers}`, source, '-o', partial];
if (process.platform === 'darwin') flags.unshift('-undefined', 'dynamic_lookup');
const build = spawnSync(compiler, flags, { encoding: 'utf8' });
if (build.error || build.status !== 0) {
  rmSync(partial, { force: true });
  const firstError = (build.stderr ?? String(build.error)).split('\n').find((line) => /error/i.test(line)) ?? `exit ${build.status}`;
  skip(`${compiler} failed: ${firstError.trim()}`);
}
renameSync(partial, target); // atomic: a running process never loads a half-written addon
console.log(`lfusion-stream: native kernels built (${target}).`);
