// A real NFS server on loopback for tests and benchmarks: nfs-ganesha (VFS
// FSAL) with rpcbind, started and stopped by PID. rpcbind is started only
// when no portmapper answers on 127.0.0.1 already.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { SLOWDOWN } from './kernel-vm.js';

const exec = promisify(execFile);

export class Ganesha {
  ganesha: ChildProcess | undefined;
  rpcbind: ChildProcess | undefined;
  readonly exportDir: string;

  /**
   * @param exportOptions the export's access options (default: no squashing,
   *   any source port); e.g. `PrivilegedPort = true; Squash = root_squash;`
   *   for an export like a stock Linux server's (secure, root_squash).
   */
  constructor(
    readonly dir: string,
    readonly exportOptions = 'Squash = None;',
  ) {
    this.exportDir = path.join(dir, 'export');
  }

  get exportPath(): string {
    return this.exportDir;
  }

  private config(): string {
    return `NFS_CORE_PARAM {
    Bind_addr = 127.0.0.1;
    NFS_Port = 2049;
    MNT_Port = 20048;
    Protocols = 3, 4;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}
NFS_KRB5 { Active_krb5 = false; }
NFSV4 { Graceless = true; Only_Numeric_Owners = true; RecoveryRoot = ${this.dir}/recov; }
EXPORT {
    Export_Id = 1; Path = ${this.exportDir}; Pseudo = ${this.exportDir};
    Access_Type = RW; SecType = sys; ${this.exportOptions}
    FSAL { Name = VFS; }
}
`;
  }

  async start(): Promise<void> {
    await fs.mkdir(this.exportDir, { recursive: true });
    await fs.mkdir(path.join(this.dir, 'recov'), { recursive: true });
    await fs.writeFile(path.join(this.dir, 'ganesha.conf'), this.config());
    const portmapperUp = await exec('rpcinfo', ['-p', '127.0.0.1']).then(
      () => true,
      () => false,
    );
    if (!this.rpcbind && !portmapperUp) {
      await exec('sh', ['-c', 'rm -f /run/rpcbind/*.xdr; mkdir -p /run/rpcbind']);
      this.rpcbind = spawn('rpcbind', ['-f'], { stdio: 'ignore' });
      for (
        let i = 0;
        i < 100 &&
        !(await exec('rpcinfo', ['-p', '127.0.0.1']).then(
          () => true,
          () => false,
        ));
        i++
      ) {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await this.startGanesha();
  }

  async startGanesha(): Promise<void> {
    const log = path.join(this.dir, 'ganesha.log');
    await fs.writeFile(log, '');
    this.ganesha = spawn(
      'ganesha.nfsd',
      ['-F', '-f', path.join(this.dir, 'ganesha.conf'), '-L', log, '-p', path.join(this.dir, 'ganesha.pid')],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 20_000 * SLOWDOWN;
    for (;;) {
      if ((await fs.readFile(log, 'utf8')).includes('NFS SERVER INITIALIZED')) {
        const ok = await exec('rpcinfo', ['-T', 'tcp', '127.0.0.1', 'mountd', '3']).then(
          () => true,
          () => false,
        );
        if (ok) return;
      }
      if (this.ganesha.exitCode !== null) throw new Error(`ganesha exited: ${await fs.readFile(log, 'utf8')}`);
      if (Date.now() > deadline) throw new Error(`ganesha did not start in ${20 * SLOWDOWN} s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stopGanesha(): Promise<void> {
    const g = this.ganesha;
    if (!g || g.exitCode !== null) return;
    const exited = new Promise((r) => g.once('exit', r));
    g.kill('SIGTERM');
    const timer = setTimeout(() => g.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async stop(): Promise<void> {
    await this.stopGanesha();
    const r = this.rpcbind;
    if (r && r.exitCode === null) {
      const exited = new Promise((res) => r.once('exit', res));
      r.kill('SIGTERM');
      await exited;
    }
    this.rpcbind = undefined;
  }
}
