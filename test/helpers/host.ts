// Host state checks for node tests: the loop table and the mount table must
// be back where they started; checksums prove bytes were not touched.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';

export const exec = promisify(execFile);

export async function loopTable(): Promise<string[]> {
  const { stdout } = await exec('losetup', ['-J', '-l']);
  const parsed = JSON.parse(stdout || '{}') as { loopdevices?: Array<{ name: string; 'back-file': string }> };
  return (parsed.loopdevices ?? []).map((l) => `${l.name} ${l['back-file']}`).sort();
}

export async function mountTargets(): Promise<string[]> {
  const { stdout } = await exec('findmnt', ['-J', '-l', '-o', 'TARGET']);
  return ((JSON.parse(stdout) as { filesystems: Array<{ target: string }> }).filesystems ?? []).map((f) => f.target).sort();
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
