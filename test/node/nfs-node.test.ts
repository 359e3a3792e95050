// The node service on NFS pools. These machines have no kernel NFS client:
// the one step that needs it (mount -t nfs) is checked by its exact command
// line (a MountRecorder on the driver's PATH), and the whole data path runs through the pre-mounted mode, where the
// export's directory (served by a real nfs-ganesha) is reachable locally.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { blockCap, Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { FUSE_GETATTR, FuseStandIn } from '../helpers/fuse-stand-in.js';
import { Ganesha } from '../helpers/ganesha.js';
import { exec, HostState, mountTargets } from '../helpers/host.js';
import { KubeletPaths, podUid } from '../helpers/kubelet.js';
import { MountRecorder } from '../helpers/mount-recorder.js';

const MiB = 1024 * 1024;

describe('node service on NFS pools', function () {
  this.timeout(120_000);
  let dir: string;
  let g: Ganesha;
  let d: DriverProcess;
  let k: KubeletPaths;
  let host: HostState;
  let mounts: MountRecorder;

  before(async () => {
    host = await HostState.capture();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-nfsnode-'));
    g = new Ganesha(dir);
    await g.start();
    mounts = await MountRecorder.create(dir);
    d = await DriverProcess.start({
      mode: 'all',
      env: { PATH: mounts.path() },
      extraArgs: ['--mounted-at-dirs', g.exportDir],
    });
    k = new KubeletPaths(d.kubeletDir);
  });
  after(async () => {
    await d?.stop('SIGKILL');
    const leaks = await host.leaks();
    await d?.cleanup();
    await g?.stop();
    await fs.rm(dir, { recursive: true, force: true });
    expect(leaks, 'loop devices or mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  async function provision(name: string, parameters: Record<string, string>, cap: object, bytes = 0) {
    const { volume } = await rpc<{ volume: { volume_id: string; volume_context: Record<string, string> } }>(
      d.clients.controller,
      'CreateVolume',
      {
        name,
        capacity_range: bytes ? { required_bytes: bytes } : null,
        volume_capabilities: [cap],
        parameters,
      },
    );
    await rpc(d.clients.controller, 'ControllerPublishVolume', { volume_id: volume.volume_id, node_id: 'node-a', volume_capability: cap });
    return volume;
  }

  /** What the kubelet does before NodeStageVolume; returns the staging path. */
  async function prepareStaging(v: { volume_id: string }) {
    const staging = k.staging(v.volume_id);
    await k.prepareStage(staging);
    return staging;
  }

  /** NodeStageVolume with the volume's own context, as the kubelet sends it. */
  function stage(v: { volume_id: string; volume_context: Record<string, string> }, cap: object, staging: string) {
    return rpc(d.clients.node, 'NodeStageVolume', {
      volume_id: v.volume_id,
      staging_target_path: staging,
      volume_capability: cap,
      volume_context: v.volume_context,
    });
  }

  async function stagePublish(v: { volume_id: string; volume_context: Record<string, string> }, cap: object, uid: string, raw = false) {
    const staging = raw ? k.blockStaging(`pv-${uid}`) : k.staging(v.volume_id);
    await k.prepareStage(staging);
    await rpc(d.clients.node, 'NodeStageVolume', {
      volume_id: v.volume_id,
      staging_target_path: staging,
      volume_capability: cap,
      volume_context: v.volume_context,
    });
    const target = raw ? k.blockTarget(`pv-${uid}`, uid) : k.target(uid, 'pv');
    await k.preparePublish(target);
    await rpc(d.clients.node, 'NodePublishVolume', {
      volume_id: v.volume_id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: cap,
      volume_context: v.volume_context,
    });
    return { staging, target };
  }

  async function unpublishUnstage(v: { volume_id: string }, p: { staging: string; target: string }) {
    await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: v.volume_id, target_path: p.target });
    await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: v.volume_id, staging_target_path: p.staging });
  }

  it('mounts a share with mount -t nfs and the StorageClass mountOptions (no kernel NFS client here: checked by its command line)', async () => {
    const cap = mountCap('MULTI_NODE_MULTI_WRITER');
    const v = await provision(
      'pvc-kernel',
      { pool: 'nfs', server: '127.0.0.1', share: g.exportPath, mountOptions: 'nfsvers=4.1,hard,noatime' },
      cap,
    );
    const staging = await prepareStaging(v);
    const err = await expectCode(stage(v, cap, staging), Code.INTERNAL);
    expect(await mounts.calls()).to.include(`mount -t nfs -o nfsvers=4.1,hard,noatime -- 127.0.0.1:${g.exportPath}/pvc-kernel ${staging}`);
    expect(err.details, 'mount options are never shown').to.contain('-o <redacted>').and.not.contain('noatime');
    expect(await mountTargets()).to.not.include(staging);
  });

  it('mounts the export once for a block image (no kernel NFS client here: checked by its command line), leaving nothing behind', async () => {
    const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
    const v = await provision(
      'pvc-kernel-img',
      { pool: 'nfs', kind: 'block', server: '127.0.0.1', share: g.exportPath, mountOptions: 'nfsvers=4.1' },
      cap,
      64 * MiB,
    );
    const staging = await prepareStaging(v);
    await expectCode(stage(v, cap, staging), Code.INTERNAL);
    expect((await mounts.calls()).at(-1)).to.match(
      new RegExp(
        `mount -t nfs -o nfsvers=4.1 -- 127\\.0\\.0\\.1:${g.exportPath.replace(/[/.]/g, '\\$&')} ${path.join(d.dir, 'nfs').replace(/[/.]/g, '\\$&')}/[0-9a-f]{16}`,
      ),
    );
    expect(await host.loopsLeft()).to.deep.equal([]);
  });

  it('refuses a volume_context mountedAt outside the directories this node allows, binding and attaching nothing', async () => {
    const evil = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-evil-'));
    try {
      await fs.writeFile(path.join(evil, 'disk.img'), '');
      await fs.truncate(path.join(evil, 'disk.img'), 64 * MiB);
      const before = await fs.readdir(evil);
      for (const [kind, cap, mountedAt, subDir] of [
        ['share', mountCap('MULTI_NODE_MULTI_WRITER'), '/etc', ''],
        ['block', mountCap('SINGLE_NODE_WRITER', 'ext4'), evil, ''],
        ['share', mountCap('MULTI_NODE_MULTI_WRITER'), g.exportDir, '..'],
      ] as const) {
        const id = `nfs:127.0.0.1:${g.exportPath}:${kind}:pvc-evil`;
        const staging = k.staging(id);
        await k.prepareStage(staging);
        await expectCode(
          rpc(d.clients.node, 'NodeStageVolume', {
            volume_id: id,
            staging_target_path: staging,
            volume_capability: cap,
            volume_context: { subDir, mountedAt },
          }),
          Code.INVALID_ARGUMENT,
        );
        expect(await mountTargets()).to.not.include(staging);
      }
      // Inside the allowed directory, a symlink out of it is refused too.
      await fs.symlink(evil, path.join(g.exportDir, 'link-out'));
      const id = `nfs:127.0.0.1:${g.exportPath}:block:pvc-link-out`;
      await k.prepareStage(k.staging(id));
      await expectCode(
        rpc(d.clients.node, 'NodeStageVolume', {
          volume_id: id,
          staging_target_path: k.staging(id),
          volume_capability: mountCap('SINGLE_NODE_WRITER', 'ext4'),
          volume_context: { subDir: 'link-out', mountedAt: g.exportDir },
        }),
        Code.INVALID_ARGUMENT,
      );
      await fs.unlink(path.join(g.exportDir, 'link-out'));
      expect(await host.loopsLeft()).to.deep.equal([]);
      expect(await fs.readdir(evil)).to.deep.equal(before);
      expect((await fs.stat(path.join(evil, 'disk.img'))).blocks, 'never formatted').to.equal(0);
    } finally {
      await fs.rm(evil, { recursive: true, force: true });
    }
  });

  it('all-in-one, attaches NFS volumes only to its own node (NOT_FOUND for another), and no more than its max_volumes_per_node', async () => {
    const cap = mountCap('MULTI_NODE_MULTI_WRITER');
    const limited = await DriverProcess.start({ mode: 'all', nodeId: 'node-lim', extraArgs: ['--max-volumes-per-node', '3'] });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const { volume } = await rpc<{ volume: { volume_id: string } }>(limited.clients.controller, 'CreateVolume', {
        name: `pvc-limit-${i}`,
        volume_capabilities: [cap],
        parameters: { pool: 'nfs', server: '127.0.0.1', share: g.exportPath },
      });
      ids.push(volume.volume_id);
    }
    const publish = (id: string, node = 'node-lim') =>
      rpc(limited.clients.controller, 'ControllerPublishVolume', { volume_id: id, node_id: node, volume_capability: cap });
    try {
      await expectCode(publish(ids[0]!, 'node-z'), Code.NOT_FOUND);
      for (const id of ids.slice(0, 3)) await publish(id);
      await expectCode(publish(ids[3]!), Code.RESOURCE_EXHAUSTED);
      await publish(ids[0]!); // already published: still OK
    } finally {
      for (const id of ids) {
        await rpc(limited.clients.controller, 'ControllerUnpublishVolume', { volume_id: id, node_id: 'node-lim' });
        await rpc(limited.clients.controller, 'DeleteVolume', { volume_id: id });
      }
      await limited.cleanup();
    }
  });

  it('answers UNAVAILABLE (retryable) when the NFS server cannot be reached, mounting nothing (the real mount.nfs: with nfsvers=3 it asks the server before the kernel)', async () => {
    // No NFS server answers on 127.0.0.2 (the suite's ganesha binds 127.0.0.1):
    // mount.nfs's query of the server is refused before mount(2) is tried.
    const cap = mountCap('MULTI_NODE_MULTI_WRITER');
    for (const kind of ['share', 'block'] as const) {
      const volumeId = `nfs:127.0.0.2:/gone:${kind}:pvc-unreachable`;
      const staging = k.staging(volumeId);
      await k.prepareStage(staging);
      const context = {
        subDir: 'pvc-unreachable',
        mountOptions: 'nfsvers=3,nolock,retry=0',
        ...(kind === 'block' ? { fsType: 'ext4' } : {}),
      };
      const err = await expectCode(
        rpc(d.clients.node, 'NodeStageVolume', {
          volume_id: volumeId,
          staging_target_path: staging,
          volume_capability: kind === 'block' ? mountCap('SINGLE_NODE_WRITER', 'ext4') : cap,
          volume_context: context,
        }),
        Code.UNAVAILABLE,
      );
      expect(err.details, kind).to.match(/unreachable.*refused/i);
      expect((await mountTargets()).filter((t) => t.startsWith(d.dir) || t.startsWith(k.root))).to.deep.equal([]);
    }
  });

  it('remounts a share whose NFS mount went stale, keeps a healthy one, unstages a stale one (a FUSE stand-in plays the NFS mount: no kernel NFS client here, so the remount is checked by its command line)', async () => {
    const cap = mountCap('MULTI_NODE_MULTI_WRITER');
    const options = 'nfsvers=3,nolock,retry=0';
    const v = await provision('pvc-stale', { pool: 'nfs', server: '127.0.0.1', share: g.exportPath, mountOptions: options }, cap);
    const staging = k.staging(v.volume_id);
    await k.prepareStage(staging);
    const stage = () =>
      rpc(d.clients.node, 'NodeStageVolume', {
        volume_id: v.volume_id,
        staging_target_path: staging,
        volume_capability: cap,
        volume_context: v.volume_context,
      });
    const standIn = await FuseStandIn.mount(`127.0.0.1:${g.exportPath}/pvc-stale`, staging);
    try {
      await stage(); // the volume's export is mounted and answers: already staged
      expect(standIn.seen).to.include(FUSE_GETATTR);
      expect(await mountTargets()).to.include(staging);
      standIn.makeStale();
      await expectCode(stage(), Code.INTERNAL); // the remount: mount(2) has no NFS here
      expect((await mounts.calls()).at(-1)).to.equal(`mount -t nfs -o ${options} -- 127.0.0.1:${g.exportPath}/pvc-stale ${staging}`);
      expect(await mountTargets(), 'the stale mount is gone').to.not.include(staging);
      // NodeUnstageVolume unmounts a stale mount too.
      (await FuseStandIn.mount(`127.0.0.1:${g.exportPath}/pvc-stale`, staging)).makeStale();
      await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: v.volume_id, staging_target_path: staging });
      expect(await mountTargets()).to.not.include(staging);
    } finally {
      await exec('umount', [staging]).catch(() => undefined);
    }
  });

  it('refuses a volume_context subDir that climbs out', async () => {
    const cap = mountCap('MULTI_NODE_MULTI_WRITER');
    const v = await provision('pvc-ctx', { pool: 'nfs', server: '127.0.0.1', share: g.exportPath, mountedAt: g.exportDir }, cap);
    const staging = k.staging(v.volume_id);
    await k.prepareStage(staging);
    await expectCode(
      rpc(d.clients.node, 'NodeStageVolume', {
        volume_id: v.volume_id,
        staging_target_path: staging,
        volume_capability: cap,
        volume_context: { ...v.volume_context, subDir: '../../etc' },
      }),
      Code.INVALID_ARGUMENT,
    );
  });

  it('pre-mounted mode, share: a pod writes through the node, the NFS server has the bytes, another pod reads them', async () => {
    const cap = mountCap('MULTI_NODE_MULTI_WRITER');
    const v = await provision('pvc-premounted', { pool: 'nfs', server: '127.0.0.1', share: g.exportPath, mountedAt: g.exportDir }, cap);
    const [a, b] = [podUid(), podUid()];
    const pa = await stagePublish(v, cap, a);
    await fs.writeFile(path.join(pa.target, 'hello'), 'through the pre-mounted export');
    const viaNfs = await exec('nfs-cat', [`nfs://127.0.0.1${g.exportPath}/pvc-premounted/hello`]);
    expect(viaNfs.stdout).to.equal('through the pre-mounted export');
    const tb = k.target(b, 'pv');
    await k.preparePublish(tb);
    await rpc(d.clients.node, 'NodePublishVolume', {
      volume_id: v.volume_id,
      staging_target_path: pa.staging,
      target_path: tb,
      volume_capability: cap,
      volume_context: v.volume_context,
    });
    expect(await fs.readFile(path.join(tb, 'hello'), 'utf8')).to.equal('through the pre-mounted export');
    await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: v.volume_id, target_path: tb });
    await unpublishUnstage(v, pa);
  });

  it('pre-mounted mode through the operator’s symbolic link: --mounted-at-dirs and mountedAt may name a link to the mount', async () => {
    const link = path.join(dir, 'nas-link');
    await fs.symlink(g.exportDir, link);
    const linked = await DriverProcess.start({ mode: 'all', env: { PATH: mounts.path() }, extraArgs: ['--mounted-at-dirs', link] });
    try {
      const cap = mountCap('MULTI_NODE_MULTI_WRITER');
      const { volume } = await rpc<{ volume: { volume_id: string; volume_context: Record<string, string> } }>(
        linked.clients.controller,
        'CreateVolume',
        {
          name: 'pvc-via-link',
          volume_capabilities: [cap],
          parameters: { pool: 'nfs', server: '127.0.0.1', share: g.exportPath, mountedAt: link },
        },
      );
      const lk = new KubeletPaths(linked.kubeletDir);
      const staging = lk.staging(volume.volume_id);
      await lk.prepareStage(staging);
      const call = {
        volume_id: volume.volume_id,
        staging_target_path: staging,
        volume_capability: cap,
        volume_context: volume.volume_context,
      };
      await rpc(linked.clients.node, 'NodeStageVolume', call);
      await fs.writeFile(path.join(staging, 'f'), 'through the link');
      expect(await fs.readFile(path.join(g.exportDir, 'pvc-via-link', 'f'), 'utf8')).to.equal('through the link');
      await rpc(linked.clients.node, 'NodeUnstageVolume', { volume_id: volume.volume_id, staging_target_path: staging });
      await rpc(linked.clients.controller, 'DeleteVolume', { volume_id: volume.volume_id });
    } finally {
      await linked.cleanup();
    }
  });

  it('pre-mounted mode, block: an image made over NFS is formatted once, mounted, and keeps its data across restage', async () => {
    const cap = mountCap('SINGLE_NODE_WRITER', 'xfs');
    const v = await provision(
      'pvc-premounted-img',
      { pool: 'nfs', kind: 'block', server: '127.0.0.1', share: g.exportPath, mountedAt: g.exportDir },
      cap,
      320 * MiB,
    );
    const uid = podUid();
    const first = await stagePublish(v, cap, uid);
    await fs.writeFile(path.join(first.target, 'db'), 'rows');
    await unpublishUnstage(v, first);
    expect(await host.loopsLeft()).to.deep.equal([]);
    const again = await stagePublish(v, cap, podUid());
    expect(await fs.readFile(path.join(again.target, 'db'), 'utf8')).to.equal('rows');
    const stats = await rpc<{ volume_condition: { abnormal: boolean } }>(d.clients.node, 'NodeGetVolumeStats', {
      volume_id: v.volume_id,
      volume_path: again.target,
    });
    expect(stats.volume_condition.abnormal).to.equal(false);
    await unpublishUnstage(v, again);
  });

  it('pre-mounted mode, raw block', async () => {
    const cap = blockCap();
    const v = await provision(
      'pvc-premounted-raw',
      { pool: 'nfs', kind: 'block', server: '127.0.0.1', share: g.exportPath, mountedAt: g.exportDir },
      cap,
      16 * MiB,
    );
    const uid = podUid();
    const p = await stagePublish(v, cap, uid, true);
    expect((await exec('blockdev', ['--getsize64', p.target])).stdout.trim()).to.equal(String(16 * MiB));
    await unpublishUnstage(v, p);
    expect(await host.loopsLeft()).to.deep.equal([]);
  });
});
