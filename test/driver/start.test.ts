// The driver at start (root tier: it drops to another user to show it):
// a mode that serves the Node service, started as a user that is not root,
// stops at once and says why, touching nothing. (The central controller,
// which needs no privilege, runs as uid 65532 in test/image/chart-pods.test.ts.)
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { MAIN } from '../helpers/driver-process.js';

const exec = promisify(execFile);

describe('driver start', () => {
  it('refuses to serve the Node service as a user that is not root, saying which services need root, and makes nothing', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-start-'));
    try {
      await fs.chmod(dir, 0o777);
      for (const mode of ['all', 'node', 'local']) {
        const pool = path.join(dir, `pool-${mode}`);
        const args = ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, MAIN, '--mode', mode];
        const flags = ['--endpoint', `unix://${dir}/${mode}.sock`, '--pool-dir', pool, '--kubelet-dir', dir, '--self-register=false'];
        const failed = await exec('setpriv', [...args, ...flags]).then(
          () => undefined,
          (err: { code: number; stderr: string }) => err,
        );
        expect(failed?.code, mode).to.equal(1);
        expect(failed?.stderr, mode).to.match(/serves the Node service.*run it as root \(uid 0; this process is uid 65534\)/);
        expect(await fs.readdir(dir), `${mode}: nothing made`).to.deep.equal([]);
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
