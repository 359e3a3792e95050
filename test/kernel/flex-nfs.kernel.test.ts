// The FlexVolume berth/nfs driver, the single executable as the kubelet runs
// it, mounting with the kernel NFS client in the kernel tier's VM.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { FLEX_EXECUTABLE } from '../helpers/flex-executable.js';
import { FlexKubelet, type FlexPV } from '../helpers/flex-kubelet.js';
import { Ganesha } from '../helpers/ganesha.js';
import { exec, HostState, mountRowAt } from '../helpers/host.js';
import { requireKernelVm } from '../helpers/kernel-vm.js';

describe('kernel VM: the FlexVolume berth/nfs driver mounts with the kernel client', function () {
  this.timeout(600_000);
  let dir: string;
  let g: Ganesha;
  let kubelet: FlexKubelet;
  let host: HostState;

  before(async () => {
    requireKernelVm();
    host = await HostState.capture();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-kflex-'));
    g = new Ganesha(dir);
    await g.start();
    // Built on the test machine before the VM boots (npm run test:kernel).
    await fs.access(FLEX_EXECUTABLE);
    const pluginDir = path.join(dir, 'exec');
    await exec(FLEX_EXECUTABLE, ['install', pluginDir]);
    kubelet = new FlexKubelet(path.join(dir, 'kubelet'), pluginDir, {
      PATH: process.env.PATH,
      BERTH_FLEX_LOG: path.join(dir, 'flex.log'),
      BERTH_FLEX_STATE: path.join(dir, 'state'),
    });
  });
  after(async () => {
    const leaks = host ? await host.leaks() : { loops: [], mounts: [] };
    await g?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
    expect(leaks, 'mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  const pv = (options: Record<string, string>, readOnly = false): FlexPV => ({
    name: 'legacy',
    driver: 'berth/nfs',
    fsType: 'nfs',
    readOnly,
    options,
  });

  for (const [version, mountOptions] of [
    ['3', 'nfsvers=3,nolock,retry=0'],
    ['4.1', 'nfsvers=4.1,retry=0'],
  ] as const) {
    it(`mounts a legacy {server, share} PV over NFSv${version} at the pod's volume directory, and unmounts it`, async () => {
      const subDir = `vol-v${version}`;
      await fs.mkdir(path.join(g.exportDir, subDir));
      const v = pv({ server: '127.0.0.1', share: g.exportDir.slice(1), subDir, mountOptions });
      const pod = { uid: randomUUID(), name: 'p', namespace: 'default' };
      const podDir = kubelet.podDir(pod.uid, v);
      await fs.mkdir(podDir, { recursive: true, mode: 0o750 });
      const mounted = await kubelet.call('berth/nfs', ['mount', podDir, kubelet.options(v, pod)]);
      try {
        expect(mounted.reply, mounted.stderr).to.deep.include({ status: 'Success' });
        const m = await mountRowAt(podDir);
        expect(m?.source).to.equal(`127.0.0.1:${g.exportDir}/${subDir}`);
        expect(m?.options.split(',')).to.include(`vers=${version}`);
        await fs.writeFile(path.join(podDir, 'from-the-pod'), version);
        expect(await fs.readFile(path.join(g.exportDir, subDir, 'from-the-pod'), 'utf8')).to.equal(version);
        const again = await kubelet.call('berth/nfs', ['mount', podDir, kubelet.options(v, pod)]);
        expect(again.reply.status, 'a second mount is idempotent').to.equal('Success');
      } finally {
        expect((await kubelet.call('berth/nfs', ['unmount', podDir])).reply.status).to.equal('Success');
      }
      expect(await mountRowAt(podDir)).to.equal(undefined);
    });
  }

  it('mounts a read-only PV read-only: writes are refused', async () => {
    await fs.mkdir(path.join(g.exportDir, 'vol-ro'));
    const v = pv({ server: '127.0.0.1', share: g.exportDir, subDir: 'vol-ro', mountOptions: 'nfsvers=4.2,retry=0' }, true);
    const pod = { uid: randomUUID(), name: 'p', namespace: 'default' };
    const podDir = kubelet.podDir(pod.uid, v);
    await fs.mkdir(podDir, { recursive: true, mode: 0o750 });
    expect((await kubelet.call('berth/nfs', ['mount', podDir, kubelet.options(v, pod)])).reply.status).to.equal('Success');
    try {
      const err = await fs.writeFile(path.join(podDir, 'x'), 'x').then(
        () => undefined,
        (e: NodeJS.ErrnoException) => e.code,
      );
      expect(err).to.equal('EROFS');
    } finally {
      expect((await kubelet.call('berth/nfs', ['unmount', podDir])).reply.status).to.equal('Success');
    }
  });
});
