// Builds the native addon with node-gyp. Uses the system Node headers (/usr/include/node, as Debian's nodejs ships
// them) when npm has not been told where headers are, so the build never needs the network.
//
// DCVG_MARCH=<gcc -march value> (default "native") picks the instruction set our own kernels are compiled for. The
// default build goes to native/build/Release/dcvg_native.node; any other DCVG_MARCH builds into its own folder,
// native/build-<march>/build/Release/dcvg_native.node, and leaves the default build alone. Load such a build with
// DCVG_NATIVE_ADDON=<that path>. scripts/test-avx2.sh uses DCVG_MARCH=x86-64-v3 to run the tests as an AVX2-only
// CPU would on a machine that has AVX-512.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const nativeDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'native');

const march = process.env.DCVG_MARCH || 'native';
// Becomes part of a compiler flag and of a folder name: only what gcc's -march values are made of.
if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(march)) {
  console.error(`build:native: DCVG_MARCH="${march}" is not a gcc -march value (e.g. native, x86-64-v3, skylake-avx512)`);
  process.exit(2);
}

/** The folder node-gyp builds in: native/ itself for the default, else a staging folder that shares native/src. */
function projectDir() {
  if (march === 'native') return nativeDir;
  const dir = join(nativeDir, `build-${march}`);
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(nativeDir, 'binding.gyp'), join(dir, 'binding.gyp'));
  const src = join(dir, 'src');
  let linked = false;
  try {
    linked = readlinkSync(src) === join('..', 'src');
  } catch {
    // not there yet (or not a link): made below
  }
  if (!linked) {
    rmSync(src, { recursive: true, force: true });
    symlinkSync(join('..', 'src'), src);
  }
  return dir;
}

const dir = projectDir();
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
// node-gyp hands unknown --flags to gyp as variables: --dcvg-march=x becomes <(dcvg_march) in binding.gyp.
const args = [gyp, 'rebuild', '--directory', dir, `--dcvg-march=${march}`];
if (!process.env.npm_config_nodedir && existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (r.status !== 0) {
  console.error('build:native failed: the native backend needs libopenblas-dev, libdnnl-dev and a C++17 compiler (see README); the reference backend still works without it');
  process.exit(r.status ?? 1);
}
if (march !== 'native') {
  console.log(`build:native: -march=${march} addon at ${join(dir, 'build', 'Release', 'dcvg_native.node')}`);
}
