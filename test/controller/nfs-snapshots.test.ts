// Snapshots, restores and clones on an NFS pool, against a real
// nfs-ganesha on loopback: the controller copies over its own NFS client,
// unprivileged and with nothing mounted; the export is inspected from the
// server side. With --copy-wait 0 every copy goes on in the background.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { Ganesha } from '../helpers/ganesha.js';
import { sha256File } from '../helpers/host.js';
import { StandInApiServer } from '../helpers/stand-in-api-server.js';

const MiB = 1 << 20;
interface Snap {
  snapshot_id: string;
  ready_to_use: boolean;
  size_bytes: string;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

for (const copyWait of [8_000, 0]) {
  describe(`snapshots on an NFS pool (nfs-ganesha on loopback, --copy-wait ${copyWait})`, function () {
    this.timeout(180_000);
    let dir: string;
    let g: Ganesha;
    let api: StandInApiServer;
    let d: DriverProcess;
    const nfs = (extra: Record<string, string> = {}) => ({ pool: 'nfs', server: '127.0.0.1', share: g.exportPath, ...extra });
    const onExport = (p = '') => path.join(g.exportDir, p);
    const c = () => d.clients.controller;
    const createShare = (name: string, extra: object = {}) =>
      rpc<{ volume: { volume_id: string; content_source: unknown } }>(c(), 'CreateVolume', {
        name,
        volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')],
        parameters: nfs(),
        ...extra,
      });
    const createBlock = (name: string, bytes: number, extra: object = {}) =>
      rpc<{ volume: { volume_id: string } }>(c(), 'CreateVolume', {
        name,
        capacity_range: { required_bytes: bytes },
        volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'ext4')],
        parameters: nfs({ kind: 'block' }),
        ...extra,
      });
    const takeSnapshot = (name: string, source: string) =>
      rpc<{ snapshot: Snap }>(c(), 'CreateSnapshot', { name, source_volume_id: source });
    /** The snapshot once ready, asking as the snapshotter does (ListSnapshots by id). */
    const ready = (id: string) =>
      until(`snapshot ${id} ready`, async () => {
        const { entries } = await rpc<{ entries: Array<{ snapshot: Snap }> }>(c(), 'ListSnapshots', { snapshot_id: id });
        return entries[0]?.snapshot.ready_to_use ? entries[0].snapshot : undefined;
      });
    /** CreateVolume retried on ABORTED (a copy still running), as the provisioner does. */
    const retried = <T>(call: () => Promise<T>) =>
      until('the volume', async () => {
        try {
          return await call();
        } catch (err) {
          if ((err as { code?: number }).code === Code.ABORTED) return undefined;
          throw err;
        }
      });

    before(async () => {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-nfssnap-'));
      g = new Ganesha(dir);
      await g.start();
      api = await StandInApiServer.start();
      api.setDriver('node-x', { name: 'berth.csi.dev', nodeID: 'node-x' });
      d = await DriverProcess.start({ mode: 'controller', extraArgs: ['--kubeconfig', api.kubeconfig, '--copy-wait', String(copyWait)] });
    });
    after(async () => {
      await d?.cleanup();
      await api?.stop();
      await g?.stop();
      await fs.rm(dir, { recursive: true, force: true });
    });

    it('snapshots and restores a share: the tree, modes, owners and links, copied on the server by the controller', async () => {
      const { volume } = await createShare('pvc-tree');
      await fs.mkdir(onExport('pvc-tree/sub'), { recursive: true });
      await fs.writeFile(onExport('pvc-tree/sub/file'), 'over nfs');
      await fs.chmod(onExport('pvc-tree/sub/file'), 0o604);
      await fs.chown(onExport('pvc-tree/sub/file'), 4321, 8765);
      await fs.symlink('/etc/hostname', onExport('pvc-tree/link'));
      const first = (await takeSnapshot('snap-tree', volume.volume_id)).snapshot;
      if (copyWait > 0) expect(first.ready_to_use).to.equal(true);
      const snap = await ready(first.snapshot_id);
      expect(snap.snapshot_id).to.equal(`nfs:127.0.0.1:${g.exportPath}:share-snapshot:snap-tree`);
      await retried(() => createShare('pvc-tree-copy', { volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } } }));
      expect(await fs.readFile(onExport('pvc-tree-copy/sub/file'), 'utf8')).to.equal('over nfs');
      const st = await fs.stat(onExport('pvc-tree-copy/sub/file'));
      expect([st.mode & 0o777, st.uid, st.gid]).to.deep.equal([0o604, 4321, 8765]);
      expect(await fs.readlink(onExport('pvc-tree-copy/link'))).to.equal('/etc/hostname');
      expect(await fs.readdir(onExport('.berth/populating'))).to.deep.equal([]);
    });

    it('snapshots, restores and clones a block image sparsely: zero chunks are never written', async () => {
      const { volume } = await createBlock('pvc-img', 256 * MiB);
      const img = onExport('pvc-img/disk.img');
      const fh = await fs.open(img, 'r+');
      await fh.write(Buffer.alloc(8 * MiB, 7), 0, 8 * MiB, 32 * MiB);
      await fh.close();
      const snap = await ready((await takeSnapshot('snap-img', volume.volume_id)).snapshot.snapshot_id);
      expect(snap.size_bytes).to.equal(String(256 * MiB));
      const copy = onExport('.berth/snapshot-data/snap-img/disk.img');
      expect(await sha256File(copy)).to.equal(await sha256File(img));
      expect((await fs.stat(copy)).blocks * 512).to.be.below(12 * MiB);
      await retried(() =>
        createBlock('pvc-img-restored', 512 * MiB, { volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } } }),
      );
      expect((await fs.stat(onExport('pvc-img-restored/disk.img'))).size).to.equal(512 * MiB);
      await retried(() => createBlock('pvc-img-clone', 256 * MiB, { volume_content_source: { volume: { volume_id: volume.volume_id } } }));
      expect(await sha256File(onExport('pvc-img-clone/disk.img'))).to.equal(await sha256File(img));
      // Another kind, a smaller size, another export: refused, nothing made.
      const from = { volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } } };
      await expectCode(createShare('pvc-wrong-kind', from), Code.INVALID_ARGUMENT);
      await expectCode(createBlock('pvc-too-small', 128 * MiB, from), Code.OUT_OF_RANGE);
      const elsewhere = rpc(c(), 'CreateVolume', {
        name: 'pvc-other-export',
        capacity_range: { required_bytes: 256 * MiB },
        volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'ext4')],
        parameters: nfs({ kind: 'block', share: '/elsewhere' }),
        ...from,
      });
      await expectCode(elsewhere, Code.INVALID_ARGUMENT);
      for (const member of ['pvc-wrong-kind', 'pvc-too-small']) expect(await fs.readdir(g.exportDir)).to.not.include(member);
      await rpc(c(), 'DeleteSnapshot', { snapshot_id: snap.snapshot_id });
      expect(await fs.readdir(onExport('.berth/snapshot-data'))).to.not.include('snap-img');
    });

    if (copyWait === 0) {
      it('a copy outlasting the wait is ready_to_use false, finishes in the background, and survives a controller restart', async () => {
        const { volume } = await createBlock('pvc-slow', 512 * MiB);
        const fh = await fs.open(onExport('pvc-slow/disk.img'), 'r+');
        for (let i = 0; i < 8; i++) await fh.write(Buffer.alloc(16 * MiB, i + 1), 0, 16 * MiB, i * 64 * MiB);
        await fh.close();
        const { snapshot } = await takeSnapshot('snap-slow', volume.volume_id);
        expect(snapshot.ready_to_use).to.equal(false);
        // Not ready: a restore from it is ABORTED (retried later).
        await expectCode(
          createBlock('pvc-too-early', 512 * MiB, { volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } } }),
          Code.ABORTED,
        );
        await d.restart('SIGKILL'); // mid-copy
        const done = await ready(snapshot.snapshot_id); // the next look starts the copy again
        expect(done.ready_to_use).to.equal(true);
        expect(await sha256File(onExport('.berth/snapshot-data/snap-slow/disk.img'))).to.equal(
          await sha256File(onExport('pvc-slow/disk.img')),
        );
        // A restore killed mid-copy: its retry after the restart copies again and converges.
        const from = { volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } } };
        await expectCode(createBlock('pvc-slow-restored', 512 * MiB, from), Code.ABORTED);
        await d.restart('SIGKILL');
        await retried(() => createBlock('pvc-slow-restored', 512 * MiB, from));
        expect(await sha256File(onExport('pvc-slow-restored/disk.img'))).to.equal(await sha256File(onExport('pvc-slow/disk.img')));
        expect(await fs.readdir(onExport('.berth/populating'))).to.deep.equal([]);
      });
    }

    it('group snapshots of NFS volumes: one group, every member copied', async () => {
      const a = (await createShare('pvc-ga')).volume;
      const b = (await createShare('pvc-gb')).volume;
      await fs.writeFile(onExport('pvc-ga/x'), 'a');
      const { group_snapshot } = await rpc<{ group_snapshot: { group_snapshot_id: string; snapshots: Snap[] } }>(
        d.clients.groupController,
        'CreateVolumeGroupSnapshot',
        { name: 'nfs-group', source_volume_ids: [a.volume_id, b.volume_id] },
      );
      expect(group_snapshot.snapshots).to.have.length(2);
      await until('the group ready', async () => {
        const got = await rpc<{ group_snapshot: { ready_to_use: boolean } }>(d.clients.groupController, 'GetVolumeGroupSnapshot', {
          group_snapshot_id: group_snapshot.group_snapshot_id,
        });
        return got.group_snapshot.ready_to_use || undefined;
      });
      await rpc(d.clients.groupController, 'DeleteVolumeGroupSnapshot', { group_snapshot_id: group_snapshot.group_snapshot_id });
    });
  });
}
