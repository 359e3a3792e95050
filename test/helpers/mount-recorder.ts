// A `mount` placed first on a process's PATH that records each call's argv
// and then runs the real mount(8). These machines have no kernel NFS client,
// so `mount -t nfs` fails; the recording shows the exact command the driver
// ran. (Its error message cannot: mount options are never shown there.)
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export class MountRecorder {
  private constructor(
    readonly binDir: string,
    private readonly log: string,
  ) {}

  /** Writes `<dir>/bin/mount`; put `binDir` first on the PATH of the process under test. */
  static async create(dir: string): Promise<MountRecorder> {
    const realMount = (await exec('/bin/sh', ['-c', 'command -v mount'])).stdout.trim();
    const binDir = path.join(dir, 'bin');
    const log = path.join(dir, 'mount-calls.log');
    await fs.mkdir(binDir, { recursive: true });
    const script = `#!/bin/sh\n{ printf 'mount'; for a in "$@"; do printf ' %s' "$a"; done; printf '\\n'; } >> '${log}'\nexec '${realMount}' "$@"\n`;
    await fs.rm(path.join(binDir, 'mount'), { force: true });
    await fs.writeFile(path.join(binDir, 'mount'), script, { mode: 0o755 });
    await fs.writeFile(log, '');
    return new MountRecorder(binDir, log);
  }

  /** PATH with the recorder first. */
  path(rest = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'): string {
    return `${this.binDir}:${rest}`;
  }

  /** Every command line recorded so far, as `mount <argv joined by spaces>`. */
  async calls(): Promise<string[]> {
    return (await fs.readFile(this.log, 'utf8')).split('\n').filter(Boolean);
  }
}
