// The FlexVolume shim as the kubelet runs it: the single executable
// dist/berth-flex, built once per test run by scripts/build-flex.mjs.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const FLEX_EXECUTABLE = path.join(ROOT, 'dist/berth-flex');

let built: Promise<string> | undefined;

/** Builds dist/berth-flex (once per process) and returns its path. */
export function flexExecutable(): Promise<string> {
  built ??= promisify(execFile)(process.execPath, [path.join(ROOT, 'scripts/build-flex.mjs')]).then(() => FLEX_EXECUTABLE);
  return built;
}
