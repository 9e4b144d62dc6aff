// Builds the native addon with node-gyp. Uses the system Node headers (/usr/include/node, as Debian's nodejs ships
// them) when npm has not been told where headers are, so the build never needs the network.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
const args = [gyp, 'rebuild', '--directory', 'native'];
if (!process.env.npm_config_nodedir && existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (r.status !== 0) {
  console.error('build:native failed: the native backend needs libopenblas-dev, libdnnl-dev and a C++17 compiler (see README); the reference backend still works without it');
  process.exit(r.status ?? 1);
}
