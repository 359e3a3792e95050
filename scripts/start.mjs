#!/usr/bin/env node
// `npm start`: runs the driver (all-in-one by default), building it first
// only when a source changed since the last build, and saying so (a build
// takes about 20 s). Arguments after `npm start --` go to the driver.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** What a build reads: the shipped sources, the protos and the build's own configuration. */
const SOURCES = ['proto', 'driver', 'controller', 'node', 'volume', 'host', 'cli', 'nfs-client', 'flex', 'tsconfig.json', 'package.json'];

/** The newest modification time under `p` (a file or a directory tree), 0 when missing. */
export function newest(p) {
  let st;
  try {
    st = fs.statSync(p);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let latest = st.mtimeMs;
  for (const e of fs.readdirSync(p)) latest = Math.max(latest, newest(path.join(p, e)));
  return latest;
}

/** Why a build is needed, or undefined when the last one is newer than every source. */
export function staleBecause(root = ROOT) {
  // `npm run build` touches dist/.built once tsc has succeeded.
  const built = newest(path.join(root, 'dist', '.built'));
  if (!built) return 'no build yet';
  const changed = SOURCES.find((s) => newest(path.join(root, s)) > built);
  return changed ? `${changed} changed since the last build` : undefined;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const why = staleBecause();
  if (why) {
    process.stderr.write(`berth: building (${why}; about 20 s)\n`);
    const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
    if (build.status !== 0) process.exit(build.status ?? 1); // a failed build leaves no stamp: the next start builds again
  }
  // The driver as a child (bin/berth.cjs sizes its thread pool before its first module loads), told of every signal this process gets.
  const driver = spawn(process.execPath, [path.join(ROOT, 'bin/berth.cjs'), ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => driver.kill(signal));
  driver.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
}
