// The node service on local pools, as root, with real loop devices, mkfs,
// mounts and bind mounts, at the kubelet's exact paths. `npm test` runs
// mocha inside a private mount namespace, so nothing mounted here can leak
// to the host; loop devices are global, and the suite proves it detached
// every one it attached.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { imageHasData } from '../../host/data-check.js';
import { blockCap, Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { exec, HostState, mountTargets, sha256File } from '../helpers/host.js';
import { KubeletPaths, podUid } from '../helpers/kubelet.js';

const MiB = 1024 * 1024;
type Cap = ReturnType<typeof mountCap> | ReturnType<typeof blockCap>;

describe('node service on a local pool (root, real devices)', function () {
  this.timeout(120_000);
  let d: DriverProcess;
  let k: KubeletPaths;
  let host: HostState;

  before(async () => {
    host = await HostState.capture();
    d = await DriverProcess.start({ mode: 'all', extraArgs: ['--max-volumes-per-node', '42'] });
    k = new KubeletPaths(d.kubeletDir);
  });

  after(async () => {
    await d.stop('SIGKILL');
    const leaks = await host.leaks();
    await d.cleanup(); // also undoes what a failed test left behind
    expect(leaks, 'loop devices or mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  /** One volume seen from the kubelet's side. */
  class Vol {
    constructor(
      readonly id: string,
      readonly pv: string,
      readonly cap: Cap,
    ) {}
    get raw() {
      return 'block' in this.cap;
    }
    get staging() {
      return this.raw ? k.blockStaging(this.pv) : k.staging(this.id);
    }
    target(uid: string) {
      return this.raw ? k.blockTarget(this.pv, uid) : k.target(uid, this.pv);
    }
    async stage(cap: Cap = this.cap) {
      await k.prepareStage(this.staging);
      await rpc(d.clients.node, 'NodeStageVolume', {
        volume_id: this.id,
        staging_target_path: this.staging,
        volume_capability: cap,
        publish_context: {},
      });
    }
    async unstage() {
      await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: this.id, staging_target_path: this.staging });
    }
    async publish(uid: string, readonly = false, cap: Cap = this.cap) {
      const target = this.target(uid);
      await k.preparePublish(target);
      await rpc(d.clients.node, 'NodePublishVolume', {
        volume_id: this.id,
        staging_target_path: this.staging,
        target_path: target,
        volume_capability: cap,
        readonly,
      });
      return target;
    }
    async unpublish(uid: string) {
      await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: this.id, target_path: this.target(uid) });
    }
    get image() {
      return path.join(d.poolDir, 'volumes', `${this.pv}.img`);
    }
  }

  async function volume(pv: string, kind: 'share' | 'block', cap: Cap, bytes = 64 * MiB): Promise<Vol> {
    const res = await rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', {
      name: pv,
      capacity_range: { required_bytes: bytes },
      volume_capabilities: [cap],
      parameters: { kind },
    });
    return new Vol(res.volume.volume_id, pv, cap);
  }

  const writeRaw = async (dev: string, text: string) => {
    const fh = await fs.open(dev, 'r+');
    try {
      const buf = Buffer.alloc(4096);
      buf.write(text);
      await fh.write(buf, 0, buf.length, 0);
      await fh.sync();
    } finally {
      await fh.close();
    }
  };
  const readRaw = async (dev: string, len: number) => {
    const fh = await fs.open(dev, 'r');
    const buf = Buffer.alloc(4096);
    await fh.read(buf, 0, 4096, 0);
    await fh.close();
    return buf.subarray(0, len).toString();
  };

  describe('identity of the node', () => {
    it('NodeGetInfo reports the node id, the volume limit and the topology', async () => {
      const info = await rpc<{ node_id: string; max_volumes_per_node: string; accessible_topology: { segments: Record<string, string> } }>(
        d.clients.node,
        'NodeGetInfo',
      );
      expect(info.node_id).to.equal('node-a');
      expect(info.max_volumes_per_node).to.equal('42');
      expect(info.accessible_topology.segments).to.deep.equal({ 'topology.berth.csi.dev/node': 'node-a' });
    });

    it('NodeGetCapabilities lists what works', async () => {
      const res = await rpc<{ capabilities: Array<{ rpc: { type: string } }> }>(d.clients.node, 'NodeGetCapabilities');
      expect(res.capabilities.map((c) => c.rpc.type)).to.have.members([
        'STAGE_UNSTAGE_VOLUME',
        'GET_VOLUME_STATS',
        'EXPAND_VOLUME',
        'VOLUME_CONDITION',
        'SINGLE_NODE_MULTI_WRITER',
      ]);
    });
  });

  describe('data survives a whole volume life', () => {
    const cases: Array<[string, 'share' | 'block', Cap, number]> = [
      ['share', 'share', mountCap('MULTI_NODE_MULTI_WRITER'), 0],
      ['block ext4', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'), 64 * MiB],
      ['block xfs', 'block', mountCap('SINGLE_NODE_WRITER', 'xfs'), 320 * MiB],
      ['block btrfs', 'block', mountCap('SINGLE_NODE_WRITER', 'btrfs'), 160 * MiB],
      ['raw block', 'block', blockCap(), 16 * MiB],
    ];
    for (const [label, kind, cap, bytes] of cases) {
      it(`${label}: written in pod A, read in pod B after unpublish, unstage, stage, publish`, async () => {
        const v = await volume(`pvc-life-${label.replace(/ /g, '-')}`, kind, cap, bytes);
        const [a, b] = [podUid(), podUid()];
        await v.stage();
        const ta = await v.publish(a);
        if (v.raw) await writeRaw(ta, `hello from ${label}`);
        else await fs.writeFile(path.join(ta, 'greeting'), `hello from ${label}`);
        await v.unpublish(a);
        expect(await fs.stat(ta).catch(() => null), 'target removed').to.equal(null);
        await v.unstage();
        if (kind === 'block') expect(await host.loopsLeft()).to.deep.equal([]);
        await v.stage();
        const tb = await v.publish(b);
        const read = v.raw ? await readRaw(tb, `hello from ${label}`.length) : await fs.readFile(path.join(tb, 'greeting'), 'utf8');
        expect(read).to.equal(`hello from ${label}`);
        await v.unpublish(b);
        await v.unstage();
      });
    }

    it('a ReadWriteMany share is published to two pods at once', async () => {
      const v = await volume('pvc-rwx', 'share', mountCap('MULTI_NODE_MULTI_WRITER'));
      const [a, b] = [podUid(), podUid()];
      await v.stage();
      const ta = await v.publish(a);
      const tb = await v.publish(b);
      await fs.writeFile(path.join(ta, 'from-a'), 'A');
      expect(await fs.readFile(path.join(tb, 'from-a'), 'utf8')).to.equal('A');
      await v.unpublish(a);
      await v.unpublish(b);
      await v.unstage();
    });
  });

  describe('format only when blank', () => {
    it('mounts an image that already holds ext4 with data, without reformatting it', async () => {
      const v = await volume('pvc-preformatted', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'));
      const seed = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-seed-'));
      await fs.writeFile(path.join(seed, 'precious'), 'keep me');
      await exec('mkfs.ext4', ['-q', '-F', '-d', seed, v.image]);
      await fs.rm(seed, { recursive: true });
      await v.stage();
      const t = await v.publish(podUid());
      expect(await fs.readFile(path.join(t, 'precious'), 'utf8')).to.equal('keep me');
      await v.unpublish(path.basename(path.dirname(path.dirname(path.dirname(path.dirname(t))))));
      await v.unstage();
    });

    for (const [label, make] of [
      ['an xfs filesystem', (img: string) => exec('mkfs.xfs', ['-q', img])],
      ['a swap signature', (img: string) => exec('mkswap', [img])],
    ] as const) {
      it(`refuses, bytes unchanged, an image holding ${label} when asked for ext4`, async () => {
        const v = await volume(`pvc-foreign-${label.split(' ')[1]}`, 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'), 320 * MiB);
        await make(v.image);
        const before = await sha256File(v.image);
        const err = await expectCode(v.stage(), Code.FAILED_PRECONDITION);
        expect(err.details).to.match(/refusing/);
        expect(await sha256File(v.image)).to.equal(before);
        expect(await host.loopsLeft(), 'its loop device was detached again').to.deep.equal([]);
        expect(await mountTargets()).to.not.include(v.staging);
      });
    }

    /** Writes `bytes` over the image at `offset`, as a damaged disk or a clumsy operator would. */
    async function overwrite(image: string, offset: number, bytes: Buffer) {
      const fh = await fs.open(image, 'r+');
      await fh.write(bytes, 0, bytes.length, offset);
      await fh.close();
    }

    for (const [label, damage] of [
      ['its first MiB zeroed', Buffer.alloc(MiB)],
      ['its first MiB overwritten with random bytes', randomBytes(MiB)],
    ] as const) {
      it(`refuses to format an ext4 volume with ${label}: the data further in is untouched`, async () => {
        const v = await volume(`pvc-damaged-${damage[0] === 0 ? 'zero' : 'random'}`, 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'));
        const uid = podUid();
        await v.stage();
        const t = await v.publish(uid);
        await fs.writeFile(path.join(t, 'data'), randomBytes(32 * MiB));
        await v.unpublish(uid);
        await v.unstage();
        await overwrite(v.image, 0, damage);
        const before = await sha256File(v.image);
        const err = await expectCode(v.stage(), Code.FAILED_PRECONDITION);
        expect(err.details).to.match(/berth made or mounted.*no signature/);
        expect(await sha256File(v.image), 'not a byte written').to.equal(before);
        expect(await host.loopsLeft(), 'its loop device was detached again').to.deep.equal([]);
        expect(await mountTargets()).to.not.include(v.staging);
      });
    }

    it('refuses to format a volume that holds data but no signature (written as a raw device)', async () => {
      const v = await volume('pvc-was-raw', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'));
      await overwrite(v.image, 48 * MiB, randomBytes(MiB)); // a database wrote here through raw block
      const before = await sha256File(v.image);
      const err = await expectCode(v.stage(), Code.FAILED_PRECONDITION);
      expect(err.details).to.match(/holds data but no filesystem signature/);
      expect(await sha256File(v.image)).to.equal(before);
      expect(await host.loopsLeft()).to.deep.equal([]);
    });

    it('never formats a blank volume staged read-only', async () => {
      const v = await volume('pvc-blank-ro', 'block', mountCap('SINGLE_NODE_READER_ONLY', 'ext4'));
      const err = await expectCode(v.stage(), Code.FAILED_PRECONDITION);
      expect(err.details).to.match(/read-only stage never formats/);
      expect(await imageHasData(v.image), 'no block written').to.equal(false);
      expect(await host.loopsLeft()).to.deep.equal([]);
    });

    it('answers ALREADY_EXISTS when staged again incompatibly', async () => {
      const v = await volume('pvc-restage', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'), 320 * MiB);
      await v.stage();
      await v.stage(); // identical: OK
      await expectCode(v.stage(mountCap('SINGLE_NODE_WRITER', 'xfs')), Code.ALREADY_EXISTS);
      await expectCode(v.stage(blockCap()), Code.ALREADY_EXISTS);
      // The spec's "staged incompatibly": other mount flags, another access mode.
      await expectCode(v.stage(mountCap('SINGLE_NODE_WRITER', 'ext4', ['noatime'])), Code.ALREADY_EXISTS);
      await expectCode(v.stage(mountCap('SINGLE_NODE_READER_ONLY', 'ext4')), Code.ALREADY_EXISTS);
      await v.stage(); // identical again: OK
      await v.unstage();
      await v.unstage(); // not staged: OK
    });
  });

  describe('publish', () => {
    it('a read-only publish rejects writes', async () => {
      const v = await volume('pvc-ro', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'));
      const uid = podUid();
      await v.stage();
      const t = await v.publish(uid, true);
      const err = await fs.writeFile(path.join(t, 'nope'), 'x').catch((e: NodeJS.ErrnoException) => e);
      expect((err as NodeJS.ErrnoException).code).to.equal('EROFS');
      await v.publish(uid, true); // identical: OK
      await expectCode(v.publish(uid, false), Code.ALREADY_EXISTS);
      await v.unpublish(uid);
      await v.unstage();
    });

    it('a read-only raw block publish rejects writes: its own read-only loop device, not only a read-only bind', async () => {
      const v = await volume('pvc-ro-raw', 'block', blockCap());
      const [writer, reader] = [podUid(), podUid()];
      await v.stage();
      const rw = await v.publish(writer);
      await writeRaw(rw, 'written by the writer');
      const ro = await v.publish(reader, true);
      const before = await sha256File(v.image);
      const err = await writeRaw(ro, 'overwritten').catch((e: NodeJS.ErrnoException) => e);
      expect((err as NodeJS.ErrnoException).code).to.be.oneOf(['EROFS', 'EPERM', 'EACCES']);
      const dd = await exec('dd', ['if=/dev/zero', `of=${ro}`, 'bs=4096', 'count=1', 'oflag=direct', 'conv=notrunc']).catch(
        (e: Error) => e,
      );
      expect(dd, 'dd oflag=direct to the read-only target').to.be.instanceOf(Error);
      expect(await sha256File(v.image), 'the image is unchanged').to.equal(before);
      expect(await readRaw(ro, 21)).to.equal('written by the writer');
      await v.publish(reader, true); // identical: OK
      await expectCode(v.publish(reader, false), Code.ALREADY_EXISTS);
      await expectCode(v.unstage(), Code.FAILED_PRECONDITION); // still published, read-only too
      await v.unpublish(reader);
      expect(await host.loopsLeft(), 'the read-only device went with its publish').to.have.length(1);
      await v.unpublish(writer);
      await v.unstage();
      expect(await host.loopsLeft()).to.deep.equal([]);
    });

    it('a volume staged read-only (SINGLE_NODE_READER_ONLY) is read-only on every path', async () => {
      const v = await volume('pvc-reader', 'block', blockCap('SINGLE_NODE_READER_ONLY'));
      await v.stage();
      const before = await sha256File(v.image);
      const t = await v.publish(podUid());
      const err = await writeRaw(t, 'overwritten').catch((e: NodeJS.ErrnoException) => e);
      expect((err as NodeJS.ErrnoException).code).to.be.oneOf(['EROFS', 'EPERM', 'EACCES']);
      const staged = await writeRaw(path.join(v.staging, 'device'), 'overwritten').catch((e: NodeJS.ErrnoException) => e);
      expect((staged as NodeJS.ErrnoException).code, 'the staged device too').to.be.oneOf(['EROFS', 'EPERM', 'EACCES']);
      expect(await sha256File(v.image)).to.equal(before);
      await v.unpublish(path.basename(t));
      await v.unstage();
    });

    it('SINGLE_NODE_SINGLE_WRITER refuses a second target', async () => {
      const cap = mountCap('SINGLE_NODE_SINGLE_WRITER', 'ext4');
      const v = await volume('pvc-rwop', 'block', cap);
      const [a, b] = [podUid(), podUid()];
      await v.stage();
      await v.publish(a);
      await expectCode(v.publish(b), Code.FAILED_PRECONDITION);
      await v.unpublish(a);
      await v.publish(b);
      await v.unpublish(b);
      await v.unstage();
    });

    it('answers FAILED_PRECONDITION when the volume is not staged, NOT_FOUND when unknown', async () => {
      const v = await volume('pvc-unstaged', 'share', mountCap());
      await expectCode(v.publish(podUid()), Code.FAILED_PRECONDITION);
      const ghost = new Vol('local:node-a:share:pvc-ghost', 'pvc-ghost', mountCap());
      await expectCode(ghost.stage(), Code.NOT_FOUND);
    });

    it('refuses paths outside the kubelet directory', async () => {
      const v = await volume('pvc-escape', 'share', mountCap());
      for (const bad of ['/etc', `${d.kubeletDir}/../x`, 'relative/path', `${d.kubeletDir}/pods/../../etc`]) {
        await expectCode(
          rpc(d.clients.node, 'NodeStageVolume', { volume_id: v.id, staging_target_path: bad, volume_capability: mountCap() }),
          Code.INVALID_ARGUMENT,
        );
      }
      await expectCode(rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: v.id, target_path: '/tmp' }), Code.INVALID_ARGUMENT);
    });

    describe('symbolic links to outside the kubelet directory', () => {
      let outside: string;
      beforeEach(async () => {
        outside = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-outside-'));
      });
      afterEach(async () => fs.rm(outside, { recursive: true, force: true }));

      /** Makes `p` a symbolic link to `to`, as an attacker with write access below the kubelet directory would. */
      async function plant(p: string, to: string) {
        await fs.mkdir(path.dirname(p), { recursive: true });
        await fs.rm(p, { recursive: true, force: true });
        await fs.symlink(to, p);
      }

      it('refuses a staging path that is a symlink: nothing mounted, nothing created outside', async () => {
        const v = await volume('pvc-link-stage', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'));
        await plant(v.staging, outside);
        await expectCode(v.stage(), Code.INVALID_ARGUMENT);
        expect((await mountTargets()).filter((t) => t.startsWith(outside))).to.deep.equal([]);
        expect(await fs.readdir(outside)).to.deep.equal([]);
        expect(await host.loopsLeft()).to.deep.equal([]);
        await expectCode(v.unstage(), Code.INVALID_ARGUMENT);
      });

      it('refuses a raw block target that is a symlink: no device file made or bound outside', async () => {
        const v = await volume('pvc-link-raw', 'block', blockCap());
        await v.stage();
        const uid = podUid();
        await plant(v.target(uid), path.join(outside, 'device'));
        await expectCode(v.publish(uid), Code.INVALID_ARGUMENT);
        expect(await fs.readdir(outside)).to.deep.equal([]);
        expect((await mountTargets()).filter((t) => t.startsWith(outside))).to.deep.equal([]);
        await fs.rm(v.target(uid));
        await v.unstage();
      });

      it('refuses a filesystem target whose parent is a symlink', async () => {
        const v = await volume('pvc-link-parent', 'share', mountCap());
        await v.stage();
        const uid = podUid();
        await plant(path.dirname(v.target(uid)), outside);
        await expectCode(v.publish(uid), Code.INVALID_ARGUMENT);
        expect(await fs.readdir(outside)).to.deep.equal([]);
        await v.unstage();
      });
    });

    it('unstages and unpublishes only the volume it is named: another id, or one that does not exist, unmounts nothing', async () => {
      const a = await volume('pvc-named-a', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'));
      const b = await volume('pvc-named-b', 'share', mountCap());
      const uid = podUid();
      await a.stage();
      const target = await a.publish(uid);
      await b.stage();
      for (const wrong of [b.id, 'local:node-a:block:pvc-does-not-exist', 'local:node-a:share:pvc-named-a']) {
        await expectCode(rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: wrong, target_path: target }), Code.FAILED_PRECONDITION);
        await expectCode(
          rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: wrong, staging_target_path: a.staging }),
          Code.FAILED_PRECONDITION,
        );
      }
      await expectCode(
        rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: a.id, staging_target_path: b.staging }),
        Code.FAILED_PRECONDITION,
      );
      expect(await mountTargets()).to.include.members([target, a.staging, b.staging]);
      expect(await host.loopsLeft()).to.have.length(1);
      await a.unpublish(uid);
      await a.unstage();
      await b.unstage();
    });

    it('reports stats only for the volume at the path: another or unknown id, a path outside the kubelet directory or relative, is NOT_FOUND', async () => {
      const a = await volume('pvc-stat-a', 'share', mountCap());
      const b = await volume('pvc-stat-b', 'share', mountCap());
      const uid = podUid();
      await a.stage();
      const target = await a.publish(uid);
      const statsOf = (id: string, p: string) => rpc(d.clients.node, 'NodeGetVolumeStats', { volume_id: id, volume_path: p });
      await statsOf(a.id, target);
      await expectCode(statsOf(b.id, target), Code.NOT_FOUND);
      await expectCode(statsOf('local:node-a:share:pvc-never-made', target), Code.NOT_FOUND);
      await expectCode(statsOf(a.id, '/etc'), Code.NOT_FOUND);
      await expectCode(statsOf(a.id, 'some/path'), Code.NOT_FOUND);
      await a.unpublish(uid);
      await a.unstage();
    });

    it('refuses a target that is the staging path or inside it, creating nothing in the volume', async () => {
      const v = await volume('pvc-nested', 'share', mountCap());
      await v.stage();
      for (const target of [v.staging, path.join(v.staging, 'pod-dir', 'mount')]) {
        await expectCode(
          rpc(d.clients.node, 'NodePublishVolume', {
            volume_id: v.id,
            staging_target_path: v.staging,
            target_path: target,
            volume_capability: mountCap(),
          }),
          Code.INVALID_ARGUMENT,
        );
      }
      expect(await fs.readdir(path.join(d.poolDir, 'volumes', 'pvc-nested'))).to.deep.equal([]);
      await v.unstage();
    });

    it('refuses a path component longer than a filesystem allows with INVALID_ARGUMENT', async () => {
      const v = await volume('pvc-long', 'share', mountCap());
      const staging = path.join(d.kubeletDir, 'plugins/kubernetes.io/csi', 'x'.repeat(300), 'globalmount');
      await expectCode(
        rpc(d.clients.node, 'NodeStageVolume', { volume_id: v.id, staging_target_path: staging, volume_capability: mountCap() }),
        Code.INVALID_ARGUMENT,
      );
    });

    it('reports a busy mount instead of detaching it lazily', async () => {
      const v = await volume('pvc-busy', 'share', mountCap());
      const uid = podUid();
      await v.stage();
      const t = await v.publish(uid);
      const holder = spawn('sleep', ['60'], { cwd: t, stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 100));
      try {
        const err = await expectCode(v.unpublish(uid), Code.FAILED_PRECONDITION);
        expect(err.details).to.contain('busy');
        expect(await mountTargets()).to.include(t);
      } finally {
        holder.kill('SIGKILL');
        await new Promise((r) => holder.once('exit', r));
      }
      await v.unpublish(uid);
      await v.unstage();
    });
  });

  describe('restarts', () => {
    it('converges with the driver killed between every two steps', async () => {
      for (const [kind, cap, bytes] of [
        ['block', mountCap('SINGLE_NODE_WRITER', 'ext4'), 64 * MiB],
        ['block', blockCap(), 16 * MiB],
        ['share', mountCap(), 0],
      ] as const) {
        const v = await volume(`pvc-restart-${kind}-${'block' in cap ? 'raw' : 'fs'}`, kind, cap, bytes);
        const uid = podUid();
        const steps: Array<() => Promise<unknown>> = [() => v.stage(), () => v.publish(uid), () => v.unpublish(uid), () => v.unstage()];
        for (const step of steps) {
          await step();
          await d.restart('SIGKILL');
          await step(); // the kubelet retries after an uncertain answer
        }
      }
      expect(await host.loopsLeft()).to.deep.equal([]);
    });
  });

  describe('stats and condition', () => {
    type Stats = {
      usage: Array<{ unit: string; total: string; used: string; available: string }>;
      volume_condition: { abnormal: boolean; message: string };
    };
    const stats = (id: string, p: string) => rpc<Stats>(d.clients.node, 'NodeGetVolumeStats', { volume_id: id, volume_path: p });

    it('reports bytes and inodes of a mounted volume, abnormal once its mount is gone', async () => {
      const v = await volume('pvc-stats', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'));
      const uid = podUid();
      await v.stage();
      const t = await v.publish(uid);
      const s = await stats(v.id, t);
      expect(s.usage.map((u) => u.unit)).to.deep.equal(['BYTES', 'INODES']);
      expect(Number(s.usage[0]!.total)).to.be.within(50 * MiB, 64 * MiB);
      expect(s.volume_condition.abnormal).to.equal(false);
      await fs.rename(v.image, `${v.image}.away`);
      const missing = await stats(v.id, t);
      expect(missing.volume_condition).to.deep.include({ abnormal: true });
      expect(missing.volume_condition.message).to.contain('missing');
      await fs.rename(`${v.image}.away`, v.image);
      await exec('umount', [t]);
      const gone = await stats(v.id, t);
      expect(gone.volume_condition).to.deep.equal({ abnormal: true, message: `${t} is not mounted` });
      await v.unpublish(uid);
      await v.unstage();
      await expectCode(stats(v.id, t), Code.NOT_FOUND);
    });

    it('reports a volume whose ext4 filesystem has recorded errors as abnormal', async () => {
      const v = await volume('pvc-erroring', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'));
      const uid = podUid();
      await v.stage();
      const t = await v.publish(uid);
      expect((await stats(v.id, t)).volume_condition.abnormal).to.equal(false);
      await v.unpublish(uid);
      await v.unstage();
      // The superblock's error count, as the kernel leaves it after I/O or metadata errors.
      await exec('debugfs', ['-w', '-R', 'ssv error_count 3', v.image]);
      const reader = new Vol(v.id, v.pv, mountCap('SINGLE_NODE_READER_ONLY', 'ext4')); // read-only: no fsck to repair it first
      await reader.stage();
      const rt = await reader.publish(uid);
      const s = await stats(v.id, rt);
      expect(s.volume_condition).to.deep.include({ abnormal: true });
      expect(s.volume_condition.message).to.contain('recorded 3 errors');
      await reader.unpublish(uid);
      await reader.unstage();
    });

    it('runs e2fsck before a read-write mount when the ext4 superblock asks for one', async () => {
      const v = await volume('pvc-fsck', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'));
      await v.stage();
      await v.unstage();
      const state = async () => /^Filesystem state:\s+(.*)$/m.exec((await exec('dumpe2fs', ['-h', v.image])).stdout)?.[1];
      expect(await state()).to.equal('clean');
      await exec('tune2fs', ['-E', 'force_fsck', v.image]); // marks it with errors, as the kernel does on finding some
      expect(await state()).to.equal('clean with errors');
      await v.stage(); // a mount alone keeps the mark: only e2fsck clears it
      await v.unstage();
      expect(await state()).to.equal('clean');
    });

    it('reports a raw device by its size, abnormal once its loop device is detached', async () => {
      const v = await volume('pvc-stats-raw', 'block', blockCap(), 16 * MiB);
      const uid = podUid();
      await v.stage();
      const t = await v.publish(uid);
      const s = await stats(v.id, t);
      expect(s.usage).to.have.length(1);
      expect(s.usage[0]).to.deep.include({ unit: 'BYTES', total: String(16 * MiB) });
      expect(s.volume_condition.abnormal).to.equal(false);
      const [loop] = (await exec('losetup', ['-j', v.image, '-O', 'NAME', '-n'])).stdout.trim().split('\n');
      await exec('losetup', ['-d', loop!]);
      const detached = await stats(v.id, t);
      expect(detached.volume_condition).to.deep.include({ abnormal: true });
      expect(detached.volume_condition.message).to.contain('detached');
      await v.unpublish(uid);
      await v.unstage();
    });
  });

  describe('expansion', () => {
    async function grow(v: Vol, to: number) {
      await rpc(d.clients.controller, 'ControllerExpandVolume', { volume_id: v.id, capacity_range: { required_bytes: to } });
    }
    const total = async (p: string) => {
      const s = await fs.statfs(p);
      return s.blocks * s.bsize;
    };

    for (const [fsType, from, to] of [
      ['xfs', 320 * MiB, 480 * MiB],
      ['btrfs', 160 * MiB, 320 * MiB],
    ] as const) {
      it(`grows ${fsType} online, keeping the data`, async () => {
        const v = await volume(`pvc-grow-${fsType}`, 'block', mountCap('SINGLE_NODE_WRITER', fsType), from);
        const uid = podUid();
        await v.stage();
        const t = await v.publish(uid);
        await fs.writeFile(path.join(t, 'data'), 'still here');
        const before = await total(t);
        await grow(v, to);
        const res = await rpc<{ capacity_bytes: string }>(d.clients.node, 'NodeExpandVolume', {
          volume_id: v.id,
          volume_path: t,
          staging_target_path: v.staging,
          capacity_range: { required_bytes: to },
        });
        expect(res.capacity_bytes).to.equal(String(to));
        expect(await total(t)).to.be.greaterThan(before + (to - from) * 0.8);
        expect(await fs.readFile(path.join(t, 'data'), 'utf8')).to.equal('still here');
        await v.unpublish(uid);
        await v.unstage();
      });
    }

    it('converges with the driver SIGKILLed in the middle of ControllerExpandVolume and of NodeExpandVolume', async () => {
      const v = await volume('pvc-grow-killed', 'block', mountCap('SINGLE_NODE_WRITER', 'xfs'), 320 * MiB);
      const uid = podUid();
      await v.stage();
      const t = await v.publish(uid);
      await fs.writeFile(path.join(t, 'data'), 'still here');
      /** Sends the call, kills the driver `ms` later, restarts it, and retries until the call answers OK. */
      const killedThenRetried = async (call: () => Promise<unknown>, ms: number) => {
        const first = call().catch(() => undefined);
        await new Promise((r) => setTimeout(r, ms));
        await d.restart('SIGKILL');
        await first;
        for (let i = 0; ; i++) {
          try {
            return await call();
          } catch (err) {
            if (i > 20) throw err;
            await new Promise((r) => setTimeout(r, 50)); // ABORTED while the killed call's lock is gone: retry
          }
        }
      };
      let size = 320 * MiB;
      let fsBytes = await total(t);
      for (const ms of [0, 1, 3, 8, 20]) {
        size += 32 * MiB;
        const to = size;
        await killedThenRetried(() => grow(v, to), ms);
        await killedThenRetried(
          () =>
            rpc(d.clients.node, 'NodeExpandVolume', {
              volume_id: v.id,
              volume_path: t,
              staging_target_path: v.staging,
              capacity_range: { required_bytes: to },
            }),
          ms,
        );
        const { volume: got } = await rpc<{ volume: { capacity_bytes: string } }>(d.clients.controller, 'ControllerGetVolume', {
          volume_id: v.id,
        });
        expect(got.capacity_bytes, `record after a kill at ${ms} ms`).to.equal(String(to));
        expect((await fs.stat(v.image)).size, 'image').to.equal(to);
        const grown = await total(t);
        expect(grown - fsBytes, `the filesystem grew with the image (kill at ${ms} ms)`).to.be.greaterThan(24 * MiB);
        fsBytes = grown;
      }
      expect(await fs.readFile(path.join(t, 'data'), 'utf8')).to.equal('still here');
      expect(await fs.readdir(path.join(d.poolDir, '.tmp')), 'no temporary record left').to.deep.equal([]);
      await v.unpublish(uid);
      await v.unstage();
    });

    it('grows ext4 at the next stage when it cannot grow online, keeping the data', async () => {
      const v = await volume('pvc-grow-ext4', 'block', mountCap('SINGLE_NODE_WRITER', 'ext4'), 64 * MiB);
      const uid = podUid();
      await v.stage();
      const t = await v.publish(uid);
      await fs.writeFile(path.join(t, 'data'), 'still here');
      await grow(v, 128 * MiB);
      const online = await rpc(d.clients.node, 'NodeExpandVolume', {
        volume_id: v.id,
        volume_path: t,
        staging_target_path: v.staging,
        capacity_range: { required_bytes: 128 * MiB },
      }).then(
        () => undefined,
        (e: { code: number; details: string }) => e,
      );
      if (online !== undefined) {
        // These VMs lack CAP_SYS_RESOURCE, so ext4's online resize is refused.
        expect(online.code).to.equal(Code.FAILED_PRECONDITION);
        expect(online.details).to.contain('next staged');
      }
      await v.unpublish(uid);
      await v.unstage();
      await v.stage();
      const t2 = await v.publish(uid);
      expect(await total(t2)).to.be.greaterThan(110 * MiB);
      expect(await fs.readFile(path.join(t2, 'data'), 'utf8')).to.equal('still here');
      await v.unpublish(uid);
      await v.unstage();
    });

    it('refreshes a raw device to its new size', async () => {
      const v = await volume('pvc-grow-raw', 'block', blockCap(), 16 * MiB);
      const uid = podUid();
      await v.stage();
      const t = await v.publish(uid);
      await grow(v, 32 * MiB);
      const res = await rpc<{ capacity_bytes: string }>(d.clients.node, 'NodeExpandVolume', {
        volume_id: v.id,
        volume_path: t,
        capacity_range: { required_bytes: 32 * MiB },
      });
      expect(res.capacity_bytes).to.equal(String(32 * MiB));
      const size = (await exec('blockdev', ['--getsize64', t])).stdout.trim();
      expect(size).to.equal(String(32 * MiB));
      await v.unpublish(uid);
      await v.unstage();
    });
  });
});
