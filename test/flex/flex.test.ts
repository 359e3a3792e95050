// The FlexVolume shim, built as one self-contained executable, installed
// into a plugin directory and called exactly as the kubelet calls it.

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { nfsMountArgs } from '../../flex/nfs-driver.js';
import { undoUnder } from '../helpers/driver-process.js';
import { flexExecutable } from '../helpers/flex-executable.js';
import { FlexKubelet, type FlexPV } from '../helpers/flex-kubelet.js';
import { exec, HostState, sha256File } from '../helpers/host.js';
import { MountRecorder } from '../helpers/mount-recorder.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** A PATH with every program of the host's bin directories except Node.js. */
async function pathWithoutNode(dir: string): Promise<string> {
  const bin = path.join(dir, 'bin');
  await fs.mkdir(bin);
  const skip = new Set(['node', 'nodejs', 'npm', 'npx', 'corepack']);
  for (const src of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    for (const name of await fs.readdir(src).catch(() => [] as string[])) {
      if (skip.has(name)) continue;
      await fs.symlink(path.join(src, name), path.join(bin, name)).catch(() => undefined); // first one wins
    }
  }
  return bin;
}

describe('FlexVolume shim (single executable, called like the kubelet)', function () {
  this.timeout(180_000);
  let dir: string;
  let kubelet: FlexKubelet;
  let logFile: string;
  let host: HostState;
  let mounts: MountRecorder;

  before(async () => {
    host = await HostState.capture();
    const EXE = await flexExecutable();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-flex-'));
    const pluginDir = path.join(dir, 'exec');
    const installed = await run(EXE, ['install', pluginDir]);
    expect(JSON.parse(installed.stdout)).to.include({ status: 'Success' });
    logFile = path.join(dir, 'flex.log');
    const bin = await pathWithoutNode(dir);
    mounts = await MountRecorder.create(dir); // replaces bin/mount
    kubelet = new FlexKubelet(path.join(dir, 'kubelet'), pluginDir, {
      PATH: bin,
      BERTH_FLEX_LOG: logFile,
      BERTH_FLEX_STATE: path.join(dir, 'state'),
    });
  });

  after(async () => {
    const leaks = await host.leaks();
    await undoUnder(dir);
    await fs.rm(dir, { recursive: true, force: true });
    expect(leaks, 'loop devices or mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  it('installs atomically into <plugindir>/berth~nfs/nfs and berth~block/block, one copy (a hard link), leaving no temp file', async () => {
    const inodes = new Set<number>();
    for (const d of ['berth~nfs', 'berth~block']) {
      const entries = await fs.readdir(path.join(kubelet.pluginDir, d));
      expect(entries).to.deep.equal([d.split('~')[1]]);
      const st = await fs.stat(path.join(kubelet.pluginDir, d, entries[0]!));
      expect(st.mode & 0o111).to.equal(0o111);
      inodes.add(st.ino);
    }
    expect(inodes.size, 'both drivers are one file on the node').to.equal(1);
  });

  it('runs with no Node.js on PATH, answering init for both drivers', async () => {
    const which = await run('/bin/sh', ['-c', 'command -v node || echo none'], { env: kubelet.env });
    expect(which.stdout.trim()).to.equal('none');
    const nfs = await kubelet.call('berth/nfs', ['init']);
    expect(nfs.reply).to.deep.include({ status: 'Success' });
    expect(nfs.reply.capabilities).to.include({ attach: false });
    const block = await kubelet.call('berth/block', ['init']);
    expect(block.reply.capabilities).to.include({ attach: true });
    expect(nfs.stderr + block.stderr).to.equal('');
  });

  describe('berth/block', () => {
    let pool: string;
    const pv = (name: string, over: Partial<FlexPV> = {}): FlexPV => ({
      name,
      driver: 'berth/block',
      fsType: 'ext4',
      readOnly: false,
      options: { pool, image: name, size: '64Mi' },
      ...over,
    });
    before(async () => {
      pool = path.join(dir, 'pool');
      await fs.mkdir(pool);
    });

    it('formats, mounts, writes; unmounts; mounts again for another pod with the data intact', async () => {
      const v = pv('vol-data');
      const [a, b] = [
        { uid: randomUUID(), name: 'a', namespace: 'default' },
        { uid: randomUUID(), name: 'b', namespace: 'default' },
      ];
      const da = await kubelet.mountAttachable(v, a, 'node-a');
      await fs.writeFile(path.join(da, 'hello'), 'from pod a');
      const attached = await kubelet.call('berth/block', ['isattached', kubelet.options(v), 'node-a']);
      expect(attached.reply).to.include({ status: 'Success', attached: true });
      await kubelet.unmountAttachable(v, a, 'node-a');
      expect(await host.loopsLeft()).to.deep.equal([]);
      const gone = await kubelet.call('berth/block', ['isattached', kubelet.options(v), 'node-a']);
      expect(gone.reply.attached).to.equal(false);
      const db = await kubelet.mountAttachable(v, b, 'node-a');
      expect(await fs.readFile(path.join(db, 'hello'), 'utf8')).to.equal('from pod a');
      await kubelet.unmountAttachable(v, b, 'node-a');
      const st = await fs.stat(path.join(pool, 'vol-data.img'));
      expect(st.size).to.equal(64 * MiB);
    });

    it('answers "Not supported" for mount, unmount and getvolumename, so the kubelet does them', async () => {
      for (const args of [
        ['mount', '/x', '{}'],
        ['unmount', '/x'],
        ['getvolumename', '{}'],
      ]) {
        const { reply, code } = await kubelet.call('berth/block', args);
        expect(reply.status, args[0]).to.equal('Not supported');
        expect(code).to.equal(0);
      }
    });

    it('refuses an image holding another filesystem, bytes unchanged, nothing left attached', async () => {
      const v = pv('vol-xfs', { options: { pool, image: 'vol-xfs', size: '320Mi' } });
      await fs.writeFile(path.join(pool, 'vol-xfs.img'), '');
      await fs.truncate(path.join(pool, 'vol-xfs.img'), 320 * MiB);
      await exec('mkfs.xfs', ['-q', path.join(pool, 'vol-xfs.img')]);
      const before = await sha256File(path.join(pool, 'vol-xfs.img'));
      const err = await kubelet.mountAttachable(v, { uid: randomUUID(), name: 'x', namespace: 'default' }, 'node-a').catch((e: Error) => e);
      expect((err as Error).message).to.match(/mountdevice failed \(1\).*xfs.*refusing/);
      expect(await sha256File(path.join(pool, 'vol-xfs.img'))).to.equal(before);
      expect(await host.loopsLeft()).to.deep.equal([]);
      await fs.rmdir(kubelet.deviceMountPath(v));
      await kubelet.call('berth/block', ['detach', v.name, 'node-a']);
    });

    it('refuses to format an image it formatted before whose first MiB was zeroed, bytes unchanged', async () => {
      const v = pv('vol-damaged');
      const pod = { uid: randomUUID(), name: 'a', namespace: 'default' };
      const d1 = await kubelet.mountAttachable(v, pod, 'node-a');
      await fs.writeFile(path.join(d1, 'data'), Buffer.alloc(8 * MiB, 7));
      await kubelet.unmountAttachable(v, pod, 'node-a');
      const image = path.join(pool, 'vol-damaged.img');
      const fh = await fs.open(image, 'r+');
      await fh.write(Buffer.alloc(MiB), 0, MiB, 0);
      await fh.close();
      const before = await sha256File(image);
      const err = await kubelet.mountAttachable(v, pod, 'node-a').catch((e: Error) => e);
      expect((err as Error).message).to.match(/mountdevice failed \(1\).*berth made or mounted/);
      expect(await sha256File(image)).to.equal(before);
      expect(await host.loopsLeft()).to.deep.equal([]);
      await fs.rmdir(kubelet.deviceMountPath(v));
      await kubelet.call('berth/block', ['detach', v.name, 'node-a']);
    });

    it('refuses to attach a volume attached to another node', async () => {
      const v = pv('vol-rwo');
      expect((await kubelet.call('berth/block', ['attach', kubelet.options(v), 'node-a'])).reply.status).to.equal('Success');
      const other = await kubelet.call('berth/block', ['attach', kubelet.options(v), 'node-b']);
      expect(other.reply.status).to.equal('Failure');
      expect(other.code).to.equal(1);
      expect(other.reply.message).to.contain('attached to node node-a');
      await kubelet.call('berth/block', ['detach', v.name, 'node-a']);
      expect((await kubelet.call('berth/block', ['attach', kubelet.options(v), 'node-b'])).reply.status).to.equal('Success');
      await kubelet.call('berth/block', ['detach', v.name, 'node-b']);
    });

    it('grows with expandvolume and expandfs while mounted (xfs)', async () => {
      const v = pv('vol-grow', { fsType: 'xfs', options: { pool, image: 'vol-grow', size: '320Mi' } });
      const pod = { uid: randomUUID(), name: 'g', namespace: 'default' };
      const d = await kubelet.mountAttachable(v, pod, 'node-a');
      await fs.writeFile(path.join(d, 'f'), 'kept');
      const before = (await fs.statfs(d)).blocks;
      const grown = String(480 * MiB);
      expect(
        (await kubelet.call('berth/block', ['expandvolume', kubelet.options(v), kubelet.deviceMountPath(v), grown, String(320 * MiB)]))
          .reply.status,
      ).to.equal('Success');
      const fsReply = await kubelet.call('berth/block', [
        'expandfs',
        kubelet.options(v),
        '/dev/unused',
        kubelet.deviceMountPath(v),
        grown,
        String(320 * MiB),
      ]);
      expect(fsReply.reply.status, fsReply.reply.message).to.equal('Success');
      expect((await fs.statfs(d)).blocks).to.be.greaterThan(before * 1.3);
      expect(await fs.readFile(path.join(d, 'f'), 'utf8')).to.equal('kept');
      await kubelet.unmountAttachable(v, pod, 'node-a');
    });
  });

  describe('berth/nfs', () => {
    const nfs = (options: Record<string, string>, over: Partial<FlexPV> = {}): FlexPV => ({
      name: 'legacy',
      driver: 'berth/nfs',
      fsType: 'nfs',
      readOnly: false,
      options,
      ...over,
    });

    it('builds the mount argv from the legacy {server, share} shape, subDir, mountOptions and read-only', () => {
      expect(nfsMountArgs({ server: '10.10.0.25', share: 'export' })).to.deep.equal({ source: '10.10.0.25:/export', options: [] });
      expect(
        nfsMountArgs({
          server: 'nas',
          share: '/exports/k8s/',
          subDir: 'team-a/db',
          mountOptions: 'nfsvers=4.1, hard',
          'kubernetes.io/readwrite': 'ro',
        }),
      ).to.deep.equal({
        source: 'nas:/exports/k8s/team-a/db',
        options: ['nfsvers=4.1', 'hard', 'ro'],
      });
      expect(() => nfsMountArgs({ server: 'nas', share: '/e', subDir: '../etc' })).to.throw(/\.\./);
      expect(() => nfsMountArgs({ server: 'nas; rm -rf /', share: '/e' })).to.throw(/host name/);
    });

    it('runs mount -t nfs with exactly that argv (no kernel NFS client here: checked by its command line)', async () => {
      const pod = { uid: randomUUID(), name: 'p', namespace: 'default' };
      const v = nfs(
        { server: '127.0.0.1', share: 'export', subDir: 'vol1', mountOptions: 'nfsvers=3,nolock,port=1,mountport=1,retry=0,soft' },
        { readOnly: true },
      );
      const podDir = kubelet.podDir(pod.uid, v);
      await fs.mkdir(podDir, { recursive: true, mode: 0o750 });
      const { reply, code } = await kubelet.call('berth/nfs', ['mount', podDir, kubelet.options(v, pod)]);
      // The kernel has no NFS client on these machines, so mount fails; the
      // recorder on the shim's PATH saw the exact command. The reply never
      // shows the options.
      expect(code).to.equal(1);
      expect(reply.status).to.equal('Failure');
      expect((await mounts.calls()).at(-1)).to.equal(
        `mount -t nfs -o nfsvers=3,nolock,port=1,mountport=1,retry=0,soft,ro -- 127.0.0.1:/export/vol1 ${podDir}`,
      );
      expect(reply.message).to.contain('-o <redacted>').and.not.contain('mountport');
      await fs.rmdir(podDir);
    });

    it('unmount of a directory that is not mounted succeeds (idempotent)', async () => {
      const d = path.join(dir, 'not-mounted');
      await fs.mkdir(d);
      expect((await kubelet.call('berth/nfs', ['unmount', d])).reply.status).to.equal('Success');
    });

    it('never logs secrets, and logs to its file only', async () => {
      const v = nfs(
        { server: '127.0.0.1', share: 'export', mountOptions: 'nfsvers=4.1,port=1,retry=0,soft' },
        { secret: { password: 'hunter2-flex' } },
      );
      const pod = { uid: randomUUID(), name: 'p', namespace: 'default' };
      const podDir = kubelet.podDir(pod.uid, v);
      await fs.mkdir(podDir, { recursive: true });
      const { stderr } = await kubelet.call('berth/nfs', ['mount', podDir, kubelet.options(v, pod)]);
      expect(stderr).to.equal('');
      const log = await fs.readFile(logFile, 'utf8');
      expect(log).to.contain('"mount"');
      expect(log).to.not.contain('hunter2-flex');
      expect(log).to.not.contain(Buffer.from('hunter2-flex').toString('base64'));
      await fs.rmdir(podDir);
    });
  });

  describe('failures', () => {
    for (const [label, driver, args, message] of [
      ['malformed JSON', 'berth/nfs', ['mount', '/tmp/x', '{not json'], /malformed JSON/],
      ['missing JSON', 'berth/nfs', ['mount', '/tmp/x'], /missing the JSON options/],
      ['a missing option', 'berth/nfs', ['mount', '/tmp/x', '{"server":"127.0.0.1"}'], /missing option "share"/],
      ['a missing block option', 'berth/block', ['attach', '{"pool":"/p"}', 'node-a'], /missing option "image"/],
      ['an unknown command', 'berth/block', ['frobnicate'], /unknown command "frobnicate"/],
      [
        'a secret that is not base64',
        'berth/nfs',
        ['mount', '/tmp/x', '{"server":"h","share":"s","kubernetes.io/secret/k":"***"}'],
        /not base64/,
      ],
    ] as const) {
      it(`answers Failure JSON and exit 1 for ${label}`, async () => {
        const { reply, code, stderr } = await kubelet.call(driver, [...args]);
        expect(code).to.equal(1);
        expect(reply.status).to.equal('Failure');
        expect(reply.message).to.match(message);
        expect(stderr).to.equal('');
      });
    }
  });
});
