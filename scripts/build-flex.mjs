// Builds dist/berth-flex: one self-contained executable (a Node.js single
// executable application) that needs no Node.js on the host.
//   1. bundle dist/flex/main.js and its imports into one CommonJS file;
//   2. make a SEA blob of it;
//   3. copy this Node binary and inject the blob (postject).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { inject } from 'postject';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const bundle = path.join(dist, 'flex-bundle.cjs');
const blob = path.join(dist, 'flex-sea.blob');
const output = path.join(dist, 'berth-flex');

await build({
  entryPoints: [path.join(dist, 'flex/main.js')],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  outfile: bundle,
  logLevel: 'warning',
});

const config = path.join(dist, 'flex-sea-config.json');
fs.writeFileSync(config, JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }));
execFileSync(process.execPath, ['--experimental-sea-config', config], { stdio: 'inherit' });

fs.rmSync(output, { force: true });
fs.copyFileSync(process.execPath, output);
fs.chmodSync(output, 0o755);
await inject(output, 'NODE_SEA_BLOB', fs.readFileSync(blob), { sentinelFuse: 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2' });
console.log(`build-flex: ${path.relative(root, output)} (${(fs.statSync(output).size / 1e6).toFixed(0)} MB)`);
