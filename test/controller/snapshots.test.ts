// Snapshots, restores, clones, group snapshots, changed-block tracking and
// ModifyVolume on a local pool, over the real socket, on two real pool
// filesystems made for the test: xfs with reflink (snapshots share extents)
// and ext4 (sparse copies). Block volumes are staged for real (loop device,
// mkfs, mount) where a test needs a filesystem in use.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { blockCap, Code, expectCode, mountCap, rpc, rpcStream } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { FreshFilesystem } from '../helpers/fresh-fs.js';
import { HostState, sha256File } from '../helpers/host.js';

const exec = promisify(execFile);
const MiB = 1 << 20;

interface Vol {
  volume_id: string;
  capacity_bytes: string;
  content_source: { snapshot?: { snapshot_id: string }; volume?: { volume_id: string } } | null;
}
interface Snap {
  snapshot_id: string;
  source_volume_id: string;
  size_bytes: string;
  ready_to_use: boolean;
  group_snapshot_id: string;
  creation_time: { seconds: string };
}
interface Metadata {
  block_metadata_type: string;
  volume_capacity_bytes: string;
  block_metadata: Array<{ byte_offset: string; size_bytes: string }>;
}

/** Writes `bytes` of random data at `offset` into a file, in place. */
async function writeAt(file: string, offset: number, bytes: number): Promise<void> {
  await exec('dd', [
    'if=/dev/urandom',
    `of=${file}`,
    'bs=1M',
    `count=${bytes / MiB}`,
    `seek=${offset / MiB}`,
    'conv=notrunc,fsync',
    'status=none',
  ]);
}

const allocatedBytes = async (file: string) => (await fs.stat(file)).blocks * 512;

for (const fsType of ['xfs', 'btrfs', 'ext4'] as const) {
  const reflink = fsType !== 'ext4';
  // btrfs: the reflink paths (block snapshot and restore, share tree, changed blocks); the rest does not depend on the pool's filesystem.
  const it = (title: string, fn: (this: Mocha.Context) => Promise<void>) => {
    if (fsType !== 'btrfs' || /^(snapshots a block|snapshots and restores a share|changed-block)/.test(title)) globalThis.it(title, fn);
  };
  describe(`snapshots on a local pool (${fsType}: ${reflink ? 'reflinks' : 'sparse copies'})`, function () {
    this.timeout(120_000);
    let pfs: FreshFilesystem;
    let d: DriverProcess;
    let host: HostState;
    const c = () => d.clients.controller;
    const poolDir = () => path.join(pfs.mountpoint, 'pool');
    const image = (dirName: string) => path.join(poolDir(), 'volumes', `${dirName}.img`);
    const snapImage = (key: string) => path.join(poolDir(), 'snapshots', `${key}.img`);
    const createBlock = (name: string, bytes = 256 * MiB, extra: object = {}) =>
      rpc<{ volume: Vol }>(c(), 'CreateVolume', {
        name,
        capacity_range: { required_bytes: bytes },
        volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'ext4')],
        parameters: { kind: 'block', provisioning: 'thin' },
        ...extra,
      });
    const takeSnapshot = (name: string, source: string, parameters: Record<string, string> = {}) =>
      rpc<{ snapshot: Snap }>(c(), 'CreateSnapshot', { name, source_volume_id: source, parameters });
    const fromSnapshot = (snapshot_id: string) => ({ volume_content_source: { snapshot: { snapshot_id } } });

    before(async () => {
      host = await HostState.capture();
      pfs = await FreshFilesystem.make(undefined, { bytes: 8 * 2 ** 30, fsType });
      d = await DriverProcess.start({ mode: 'all', poolDir: poolDir(), extraArgs: ['--self-register=false', '--snapshot-metadata'] });
    });
    after(async () => {
      await d?.cleanup();
      await pfs?.remove();
      expect(await host.leaks()).to.deep.equal({ loops: [], mounts: [] });
    });

    it('snapshots a block volume: the same bytes, taken as the pool allows, and restores it (larger grows, smaller is refused)', async () => {
      const { volume } = await createBlock('pvc-snap-src');
      await writeAt(image('pvc-snap-src'), 16 * MiB, 32 * MiB);
      const free = (await fs.statfs(poolDir())).bavail;
      const { snapshot } = await takeSnapshot('snap-1', volume.volume_id);
      expect(snapshot).to.include({
        snapshot_id: 'local:node-a:block-snapshot:snap-1',
        source_volume_id: volume.volume_id,
        ready_to_use: true,
      });
      expect(snapshot.size_bytes).to.equal(String(256 * MiB));
      expect(await sha256File(snapImage('snap-1'))).to.equal(await sha256File(image('pvc-snap-src')));
      const record = JSON.parse(await fs.readFile(path.join(poolDir(), 'snapshots', 'snap-1.json'), 'utf8')) as { method: string };
      expect(record.method).to.equal(reflink ? 'reflink' : 'sparse-copy');
      // Holes stay holes (both ways); a reflink takes no data blocks of its own.
      expect(await allocatedBytes(snapImage('snap-1'))).to.be.below(40 * MiB);
      const used = (free - (await fs.statfs(poolDir())).bavail) * (await fs.statfs(poolDir())).bsize;
      if (reflink) expect(used).to.be.below(4 * MiB);
      else expect(used).to.be.within(30 * MiB, 40 * MiB);

      // The same name and source again: the same snapshot. Another source: ALREADY_EXISTS.
      expect((await takeSnapshot('snap-1', volume.volume_id)).snapshot).to.deep.equal(snapshot);
      const other = (await createBlock('pvc-snap-other')).volume;
      await expectCode(takeSnapshot('snap-1', other.volume_id), Code.ALREADY_EXISTS);

      // Restore: the snapshot's bytes, its content source recorded; larger grows the image.
      const restored = (await createBlock('pvc-restored', 512 * MiB, fromSnapshot(snapshot.snapshot_id))).volume;
      expect(restored.content_source).to.deep.include({ snapshot: { snapshot_id: snapshot.snapshot_id } });
      expect((await fs.stat(image('pvc-restored'))).size).to.equal(512 * MiB);
      const head = async (f: string) => (await exec('sh', ['-c', `head -c ${256 * MiB} ${f} | sha256sum`])).stdout;
      expect(await head(image('pvc-restored'))).to.equal(await head(snapImage('snap-1')));
      // Writing to the restored volume never reaches the snapshot or the source.
      const before = await sha256File(image('pvc-snap-src'));
      await writeAt(image('pvc-restored'), 16 * MiB, 1 * MiB);
      expect(await sha256File(image('pvc-snap-src'))).to.equal(before);
      expect(await sha256File(snapImage('snap-1'))).to.not.equal(await sha256File(image('pvc-restored')));
      // Idempotent; another source under the same name: ALREADY_EXISTS.
      expect((await createBlock('pvc-restored', 512 * MiB, fromSnapshot(snapshot.snapshot_id))).volume).to.deep.equal(restored);
      await expectCode(createBlock('pvc-restored', 512 * MiB), Code.ALREADY_EXISTS);

      // Smaller than the snapshot: OUT_OF_RANGE; another kind: INVALID_ARGUMENT; unknown: NOT_FOUND. Nothing is made.
      await expectCode(createBlock('pvc-small', 128 * MiB, fromSnapshot(snapshot.snapshot_id)), Code.OUT_OF_RANGE);
      const asShare = rpc(c(), 'CreateVolume', {
        name: 'pvc-as-share',
        volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')],
        ...fromSnapshot(snapshot.snapshot_id),
      });
      await expectCode(asShare, Code.INVALID_ARGUMENT);
      await expectCode(createBlock('pvc-nosuch', 256 * MiB, fromSnapshot('local:node-a:block-snapshot:nosuch')), Code.NOT_FOUND);
      // A snapshot held by another node's pool: RESOURCE_EXHAUSTED, on which the provisioner places the volume again.
      const elsewhere = await expectCode(
        createBlock('pvc-elsewhere', 256 * MiB, fromSnapshot('local:node-b:block-snapshot:snap-1')),
        Code.RESOURCE_EXHAUSTED,
      );
      expect(elsewhere.details).to.contain('node-b');
      const names = await fs.readdir(path.join(poolDir(), 'volumes'));
      expect(names.filter((n) => /small|as-share|nosuch|elsewhere/.test(n))).to.deep.equal([]);
    });

    it('clones a volume, and a thick clone is reserved in full', async () => {
      const { volume } = await createBlock('pvc-clone-src', 128 * MiB);
      await writeAt(image('pvc-clone-src'), 0, 8 * MiB);
      const clone = (
        await createBlock('pvc-clone', 128 * MiB, {
          parameters: { kind: 'block', provisioning: 'thick' },
          volume_content_source: { volume: { volume_id: volume.volume_id } },
        })
      ).volume;
      expect(clone.content_source).to.deep.include({ volume: { volume_id: volume.volume_id } });
      expect(await sha256File(image('pvc-clone'))).to.equal(await sha256File(image('pvc-clone-src')));
      expect(await allocatedBytes(image('pvc-clone'))).to.be.at.least(128 * MiB);
    });

    it('snapshots and restores a share: the tree with modes and owners, symbolic links as links (never followed)', async () => {
      const share = (name: string, extra: object = {}) =>
        rpc<{ volume: Vol }>(c(), 'CreateVolume', { name, volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')], ...extra });
      const { volume } = await share('pvc-tree');
      const root = path.join(poolDir(), 'volumes', 'pvc-tree');
      await fs.mkdir(path.join(root, 'a/b'), { recursive: true });
      await fs.writeFile(path.join(root, 'a/b/file'), 'hello');
      await fs.chmod(path.join(root, 'a/b/file'), 0o640);
      await fs.chown(path.join(root, 'a/b/file'), 1234, 5678);
      await fs.symlink('/etc/hostname', path.join(root, 'outside'));
      const { snapshot } = await takeSnapshot('snap-tree', volume.volume_id);
      expect(snapshot.snapshot_id).to.equal('local:node-a:share-snapshot:snap-tree');
      const restored = (await share('pvc-tree-restored', fromSnapshot(snapshot.snapshot_id))).volume;
      const copy = path.join(poolDir(), 'volumes', 'pvc-tree-restored');
      expect(await fs.readFile(path.join(copy, 'a/b/file'), 'utf8')).to.equal('hello');
      const st = await fs.stat(path.join(copy, 'a/b/file'));
      expect([st.mode & 0o777, st.uid, st.gid]).to.deep.equal([0o640, 1234, 5678]);
      expect(await fs.readlink(path.join(copy, 'outside'))).to.equal('/etc/hostname');
      expect((await fs.lstat(path.join(copy, 'outside'))).isSymbolicLink()).to.equal(true);
      expect(restored.volume_id).to.equal('local:node-a:share:pvc-tree-restored');
    });

    it('DeleteVolume of a volume with snapshots deletes it and keeps its snapshots, which still restore', async () => {
      const { volume } = await createBlock('pvc-gone', 64 * MiB);
      await writeAt(image('pvc-gone'), 0, 4 * MiB);
      const sum = await sha256File(image('pvc-gone'));
      const { snapshot } = await takeSnapshot('snap-of-gone', volume.volume_id);
      await rpc(c(), 'DeleteVolume', { volume_id: volume.volume_id });
      await createBlock('pvc-back', 64 * MiB, fromSnapshot(snapshot.snapshot_id));
      expect(await sha256File(image('pvc-back'))).to.equal(sum);
      await rpc(c(), 'DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
      await rpc(c(), 'DeleteSnapshot', { snapshot_id: snapshot.snapshot_id }); // gone: OK again
      // A retry of the restore, its snapshot gone since: the volume it made, not NOT_FOUND; another size still conflicts.
      const again = await createBlock('pvc-back', 64 * MiB, fromSnapshot(snapshot.snapshot_id));
      expect(again.volume.volume_id).to.equal('local:node-a:block:pvc-back');
      await expectCode(createBlock('pvc-back', 128 * MiB, fromSnapshot(snapshot.snapshot_id)), Code.ALREADY_EXISTS);
      await expectCode(createBlock('pvc-never', 64 * MiB, fromSnapshot(snapshot.snapshot_id)), Code.NOT_FOUND);
      await expectCode(rpc(c(), 'GetSnapshot', { snapshot_id: snapshot.snapshot_id }), Code.NOT_FOUND);
      // Another node's snapshot is not this controller's to forget.
      await expectCode(rpc(c(), 'DeleteSnapshot', { snapshot_id: 'local:node-b:block-snapshot:x' }), Code.FAILED_PRECONDITION);
    });

    it('ListSnapshots pages with tokens, filters by snapshot id and source volume, and refuses a bad token', async () => {
      const { volume } = await createBlock('pvc-list', 64 * MiB);
      for (const n of ['list-a', 'list-b', 'list-c']) await takeSnapshot(n, volume.volume_id);
      const bySource = await rpc<{ entries: Array<{ snapshot: Snap }> }>(c(), 'ListSnapshots', { source_volume_id: volume.volume_id });
      expect(bySource.entries.map((e) => e.snapshot.snapshot_id.split(':').at(-1))).to.deep.equal(['list-a', 'list-b', 'list-c']);
      const seen: string[] = [];
      let token = '';
      do {
        const page = await rpc<{ entries: Array<{ snapshot: Snap }>; next_token: string }>(c(), 'ListSnapshots', {
          max_entries: 2,
          starting_token: token,
        });
        expect(page.entries.length).to.be.at.most(2);
        seen.push(...page.entries.map((e) => e.snapshot.snapshot_id));
        token = page.next_token;
      } while (token);
      const all = await rpc<{ entries: Array<{ snapshot: Snap }> }>(c(), 'ListSnapshots', {});
      expect(seen).to.deep.equal(all.entries.map((e) => e.snapshot.snapshot_id));
      const one = await rpc<{ entries: Array<{ snapshot: Snap }> }>(c(), 'ListSnapshots', {
        snapshot_id: 'local:node-a:block-snapshot:list-b',
      });
      expect(one.entries).to.have.length(1);
      const none = await rpc<{ entries: unknown[] }>(c(), 'ListSnapshots', { snapshot_id: 'local:node-a:block-snapshot:nosuch' });
      expect(none.entries).to.deep.equal([]);
      await expectCode(rpc(c(), 'ListSnapshots', { starting_token: 'bogus' }), Code.ABORTED);
    });

    it(
      reflink
        ? 'a staged filesystem is frozen for the snapshot: the restore mounts clean and holds what was written'
        : 'a staged filesystem is never frozen for a copy that takes long: refused, saying why, writes never held; freeze: "false" takes it',
      async () => {
        const { volume } = await createBlock('pvc-staged', 256 * MiB);
        const staging = path.join(d.kubeletDir, 'plugins/kubernetes.io/csi/berth.csi.dev/staged/globalmount');
        const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
        await rpc(d.clients.node, 'NodeStageVolume', { volume_id: volume.volume_id, staging_target_path: staging, volume_capability: cap });
        try {
          await fs.writeFile(path.join(staging, 'data'), 'written before the snapshot'); // in the page cache: the freeze writes it out
          if (!reflink) {
            const refused = await expectCode(takeSnapshot('snap-staged', volume.volume_id), Code.FAILED_PRECONDITION);
            expect(refused.details).to.match(/no reflinks.*freeze: "false"/);
            expect(await fs.readdir(path.join(poolDir(), '.freezing')), 'never frozen').to.deep.equal([]);
            await exec('timeout', ['10', 'sh', '-c', `echo still-writable > ${path.join(staging, 'probe')}`]); // hangs if frozen
            await exec('sync', ['-f', staging]);
          }
          const { snapshot } = await takeSnapshot('snap-staged', volume.volume_id, reflink ? {} : { freeze: 'false' });
          await fs.writeFile(path.join(staging, 'after'), 'later'); // writes go on after the thaw
          expect(await fs.readdir(path.join(poolDir(), '.freezing'))).to.deep.equal([]); // the freeze's mark is gone with it
          const restored = (await createBlock('pvc-staged-copy', 256 * MiB, fromSnapshot(snapshot.snapshot_id))).volume;
          // The copy's filesystem is clean (no replay needed) and holds the file.
          await exec('e2fsck', ['-n', '-f', image('pvc-staged-copy')]);
          const again = path.join(d.kubeletDir, 'plugins/kubernetes.io/csi/berth.csi.dev/copy/globalmount');
          await rpc(d.clients.node, 'NodeStageVolume', {
            volume_id: restored.volume_id,
            staging_target_path: again,
            volume_capability: cap,
          });
          try {
            expect(await fs.readFile(path.join(again, 'data'), 'utf8')).to.equal('written before the snapshot');
            expect(await fs.readdir(again)).to.not.include('after');
          } finally {
            await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: restored.volume_id, staging_target_path: again });
          }
        } finally {
          await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: volume.volume_id, staging_target_path: staging });
        }
      },
    );

    it('a driver killed while a filesystem is frozen thaws it when it starts again', async () => {
      const { volume } = await createBlock('pvc-frozen', 128 * MiB);
      const staging = path.join(d.kubeletDir, 'plugins/kubernetes.io/csi/berth.csi.dev/frozen/globalmount');
      await rpc(d.clients.node, 'NodeStageVolume', {
        volume_id: volume.volume_id,
        staging_target_path: staging,
        volume_capability: mountCap('SINGLE_NODE_WRITER', 'ext4'),
      });
      try {
        // As a snapshot killed between freeze and thaw leaves it: frozen, and marked as berth's.
        await fs.writeFile(path.join(poolDir(), '.freezing', 'pvc-frozen'), '');
        await exec('fsfreeze', ['--freeze', staging]);
        await d.restart('SIGKILL');
        await exec('timeout', ['10', 'sh', '-c', `echo thawed > ${path.join(staging, 'probe')}`]); // would hang while frozen
        expect(await fs.readdir(path.join(poolDir(), '.freezing'))).to.deep.equal([]);
      } finally {
        await exec('fsfreeze', ['--unfreeze', staging]).catch(() => undefined);
        await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: volume.volume_id, staging_target_path: staging });
      }
    });

    it('a snapshot or restore killed part-way leaves nothing that blocks its retry, and no stray bytes', async () => {
      const { volume } = await createBlock('pvc-crash', 256 * MiB);
      await writeAt(image('pvc-crash'), 0, 128 * MiB);
      // What a kill leaves at each step: a copy under .tmp, bytes in snapshots/ without a record,
      // a restored image in volumes/ without its record (its .restoring marker written).
      await fs.writeFile(path.join(poolDir(), '.tmp', 'snap-crash.snapshot.999-1'), 'partial');
      await fs.copyFile(image('pvc-crash'), snapImage('snap-crash'));
      await fs.writeFile(path.join(poolDir(), '.restoring', 'pvc-crash-copy'), 'x');
      await fs.copyFile(image('pvc-crash'), image('pvc-crash-copy'));
      await d.restart('SIGKILL');
      expect(await fs.readdir(path.join(poolDir(), '.tmp'))).to.deep.equal([]);
      expect(await fs.readdir(path.join(poolDir(), 'snapshots'))).to.not.include('snap-crash.img');
      expect(await fs.readdir(path.join(poolDir(), 'volumes'))).to.not.include('pvc-crash-copy.img');
      // And a real kill in the middle of the calls: the retries converge on one snapshot and one volume.
      const pending = takeSnapshot('snap-crash', volume.volume_id).catch(() => undefined);
      await new Promise((r) => setTimeout(r, reflink ? 2 : 40));
      await d.restart('SIGKILL');
      await pending;
      const { snapshot: snap } = await takeSnapshot('snap-crash', volume.volume_id);
      expect(await sha256File(snapImage('snap-crash'))).to.equal(await sha256File(image('pvc-crash')));
      const restoring = createBlock('pvc-crash-copy', 256 * MiB, fromSnapshot(snap.snapshot_id)).catch(() => undefined);
      await new Promise((r) => setTimeout(r, reflink ? 2 : 40));
      await d.restart('SIGKILL');
      await restoring;
      await createBlock('pvc-crash-copy', 256 * MiB, fromSnapshot(snap.snapshot_id));
      expect(await sha256File(image('pvc-crash-copy'))).to.equal(await sha256File(snapImage('snap-crash')));
      const leftovers = (await fs.readdir(path.join(poolDir(), 'snapshots'))).filter((n) => n.startsWith('snap-crash'));
      expect(leftovers.sort()).to.deep.equal(['snap-crash.img', 'snap-crash.json']);
    });

    it('a restore onto a name whose data is there without a record leaves that data alone, also across a restart', async () => {
      const { volume } = await createBlock('pvc-orphan-src', 64 * MiB);
      const { snapshot } = await takeSnapshot('snap-orphan', volume.volume_id);
      // Data without a record: an interrupted create that holds data, which berth never removes.
      const orphan = image('pvc-orphan');
      await fs.writeFile(orphan, 'somebody else');
      const err = await expectCode(createBlock('pvc-orphan', 64 * MiB, fromSnapshot(snapshot.snapshot_id)), Code.FAILED_PRECONDITION);
      expect(err.details).to.contain('without a record');
      await d.restart('SIGKILL');
      await expectCode(createBlock('pvc-orphan', 64 * MiB, fromSnapshot(snapshot.snapshot_id)), Code.FAILED_PRECONDITION);
      expect(await fs.readFile(orphan, 'utf8')).to.equal('somebody else');
      expect(await fs.readdir(path.join(poolDir(), '.restoring'))).to.deep.equal([]);
      await fs.rm(orphan);
    });

    it('group snapshots: every member at one instant (staged filesystems frozen together), idempotent, and an interrupted group is taken again whole', async () => {
      const a = (await createBlock('pvc-group-a', 64 * MiB)).volume;
      const b = (await createBlock('pvc-group-b', 64 * MiB)).volume;
      await writeAt(image('pvc-group-a'), 0, 2 * MiB);
      const g = d.clients.groupController;
      const caps = await rpc<{ capabilities: Array<{ rpc: { type: string } }> }>(g, 'GroupControllerGetCapabilities');
      expect(caps.capabilities.map((x) => x.rpc.type)).to.deep.equal(['CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT']);
      const create = () =>
        rpc<{ group_snapshot: { group_snapshot_id: string; snapshots: Snap[]; ready_to_use: boolean } }>(g, 'CreateVolumeGroupSnapshot', {
          name: 'group-1',
          source_volume_ids: [a.volume_id, b.volume_id],
        });
      const { group_snapshot: group } = await create();
      expect(group.group_snapshot_id).to.equal('local:node-a:group:group-1');
      expect(group.ready_to_use).to.equal(true);
      expect(group.snapshots.map((s) => s.source_volume_id).sort()).to.deep.equal([a.volume_id, b.volume_id].sort());
      expect(group.snapshots.every((s) => s.group_snapshot_id === group.group_snapshot_id)).to.equal(true);
      expect((await create()).group_snapshot).to.deep.equal(group);
      await expectCode(rpc(g, 'CreateVolumeGroupSnapshot', { name: 'group-1', source_volume_ids: [a.volume_id] }), Code.ALREADY_EXISTS);
      const ids = group.snapshots.map((s) => s.snapshot_id);
      const got = await rpc<{ group_snapshot: { snapshots: Snap[] } }>(g, 'GetVolumeGroupSnapshot', {
        group_snapshot_id: group.group_snapshot_id,
        snapshot_ids: ids,
      });
      expect(got.group_snapshot.snapshots.map((s) => s.snapshot_id).sort()).to.deep.equal([...ids].sort());
      await expectCode(
        rpc(g, 'GetVolumeGroupSnapshot', { group_snapshot_id: group.group_snapshot_id, snapshot_ids: [ids[0]] }),
        Code.INVALID_ARGUMENT,
      );
      // A member goes with its group, never alone.
      await expectCode(rpc(c(), 'DeleteSnapshot', { snapshot_id: ids[0] }), Code.INVALID_ARGUMENT);
      // A member lost to a crash: the group is incomplete until created again, then whole, all members new.
      const member = (await fs.readdir(path.join(poolDir(), 'snapshots'))).find((n) => n.startsWith('h-') && n.endsWith('.json')) as string;
      await fs.rm(path.join(poolDir(), 'snapshots', member));
      await expectCode(rpc(g, 'GetVolumeGroupSnapshot', { group_snapshot_id: group.group_snapshot_id }), Code.ABORTED);
      const again = (await create()).group_snapshot;
      expect(again.snapshots).to.have.length(2);
      await rpc(g, 'DeleteVolumeGroupSnapshot', {
        group_snapshot_id: group.group_snapshot_id,
        snapshot_ids: again.snapshots.map((s) => s.snapshot_id),
      });
      await expectCode(rpc(g, 'GetVolumeGroupSnapshot', { group_snapshot_id: group.group_snapshot_id }), Code.NOT_FOUND);
      await rpc(g, 'DeleteVolumeGroupSnapshot', { group_snapshot_id: group.group_snapshot_id });
      await expectCode(rpc(g, 'CreateVolumeGroupSnapshot', { name: 'g2', source_volume_ids: [] }), Code.INVALID_ARGUMENT);
    });

    it(`changed-block tracking: allocated extents, and the delta of 1 MiB written (${reflink ? 'shared extents, VARIABLE_LENGTH' : 'bytes compared, FIXED_LENGTH'})`, async () => {
      const { volume } = await createBlock('pvc-cbt', 256 * MiB);
      await writeAt(image('pvc-cbt'), 8 * MiB, 4 * MiB);
      await writeAt(image('pvc-cbt'), 100 * MiB, 2 * MiB);
      const base = (await takeSnapshot('cbt-base', volume.volume_id)).snapshot;
      await writeAt(image('pvc-cbt'), 9 * MiB, 1 * MiB);
      const target = (await takeSnapshot('cbt-target', volume.volume_id)).snapshot;
      const m = d.clients.snapshotMetadata;
      const plugin = await rpc<{ capabilities: Array<{ service?: { type: string } }> }>(d.clients.identity, 'GetPluginCapabilities');
      expect(plugin.capabilities.map((x) => x.service?.type)).to.include.members(['SNAPSHOT_METADATA_SERVICE', 'GROUP_CONTROLLER_SERVICE']);
      const ranges = (msgs: Metadata[]) => msgs.flatMap((x) => x.block_metadata.map((r) => [Number(r.byte_offset), Number(r.size_bytes)]));
      const allocated = await rpcStream<Metadata>(m, 'GetMetadataAllocated', { snapshot_id: base.snapshot_id });
      expect(allocated[0]).to.include({ block_metadata_type: 'VARIABLE_LENGTH', volume_capacity_bytes: String(256 * MiB) });
      const total = (rs: number[][]) => rs.reduce((s, [, n]) => s + (n as number), 0);
      expect(total(ranges(allocated))).to.equal(6 * MiB);
      expect(ranges(allocated)[0]?.[0]).to.equal(8 * MiB);
      const delta = await rpcStream<Metadata>(m, 'GetMetadataDelta', {
        base_snapshot_id: base.snapshot_id,
        target_snapshot_id: target.snapshot_id,
      });
      expect(delta[0]?.block_metadata_type).to.equal(reflink ? 'VARIABLE_LENGTH' : 'FIXED_LENGTH');
      const changed = ranges(delta);
      // The 1 MiB written, and nothing outside [8 MiB, 12 MiB) where it was.
      expect(total(changed)).to.be.within(1 * MiB, 2 * MiB);
      for (const [off, len] of changed)
        expect([off as number, (off as number) + (len as number)]).to.satisfy(([s, e]: number[]) => s >= 8 * MiB && e <= 12 * MiB);
      // Paged: max_results per message, and starting_offset skips what ends before it.
      const paged = await rpcStream<Metadata>(m, 'GetMetadataAllocated', {
        snapshot_id: base.snapshot_id,
        max_results: 1,
        starting_offset: 50 * MiB,
      });
      expect(paged.every((x) => x.block_metadata.length === 1)).to.equal(true);
      expect(ranges(paged).every(([o, n]) => (o as number) + (n as number) > 50 * MiB)).to.equal(true);
      await expectCode(
        rpcStream(m, 'GetMetadataAllocated', { snapshot_id: base.snapshot_id, starting_offset: 512 * MiB }),
        Code.OUT_OF_RANGE,
      );
      await expectCode(rpcStream(m, 'GetMetadataAllocated', { snapshot_id: 'local:node-a:block-snapshot:nosuch' }), Code.NOT_FOUND);
      await expectCode(rpcStream(m, 'GetMetadataAllocated', {}), Code.INVALID_ARGUMENT);
      const other = (await createBlock('pvc-cbt-other', 64 * MiB)).volume;
      const otherSnap = (await takeSnapshot('cbt-other', other.volume_id)).snapshot;
      await expectCode(
        rpcStream(m, 'GetMetadataDelta', { base_snapshot_id: base.snapshot_id, target_snapshot_id: otherSnap.snapshot_id }),
        Code.INVALID_ARGUMENT,
      );
    });

    it('ControllerModifyVolume: onDelete and thin/thick applied durably and idempotently; unknown keys refused', async () => {
      const { volume } = await createBlock('pvc-modify', 64 * MiB);
      const modify = (mutable_parameters: Record<string, string>) =>
        rpc(c(), 'ControllerModifyVolume', { volume_id: volume.volume_id, mutable_parameters });
      expect(await allocatedBytes(image('pvc-modify'))).to.be.below(MiB);
      await modify({ provisioning: 'thick' });
      await modify({ provisioning: 'thick' });
      expect(await allocatedBytes(image('pvc-modify'))).to.be.at.least(64 * MiB);
      await modify({ provisioning: 'thin' });
      expect(await allocatedBytes(image('pvc-modify'))).to.be.below(MiB);
      await expectCode(modify({ size: 'huge' }), Code.INVALID_ARGUMENT);
      await expectCode(modify({ onDelete: 'shred' }), Code.INVALID_ARGUMENT);
      await expectCode(
        rpc(c(), 'ControllerModifyVolume', { volume_id: 'local:node-a:block:nosuch', mutable_parameters: {} }),
        Code.NOT_FOUND,
      );
      await modify({ onDelete: 'retain' });
      await d.restart('SIGKILL'); // durable
      await rpc(c(), 'DeleteVolume', { volume_id: volume.volume_id });
      expect(await fs.readdir(path.join(poolDir(), 'retained'))).to.include('pvc-modify.img');
    });

    it('ControllerPublishVolume read-only tells the node, which stages read-only whatever the pod asks (PUBLISH_READONLY)', async () => {
      const caps = await rpc<{ capabilities: Array<{ rpc: { type: string } }> }>(c(), 'ControllerGetCapabilities');
      expect(caps.capabilities.map((x) => x.rpc.type)).to.include.members([
        'PUBLISH_READONLY',
        'CREATE_DELETE_SNAPSHOT',
        'LIST_SNAPSHOTS',
        'CLONE_VOLUME',
        'MODIFY_VOLUME',
      ]);
      const { volume } = await createBlock('pvc-ro', 64 * MiB);
      const pub = await rpc<{ publish_context: Record<string, string> }>(c(), 'ControllerPublishVolume', {
        volume_id: volume.volume_id,
        node_id: 'node-a',
        volume_capability: blockCap('SINGLE_NODE_WRITER'),
        readonly: true,
      });
      expect(pub.publish_context).to.include({ readonly: 'true' });
      const staging = path.join(d.kubeletDir, 'plugins/kubernetes.io/csi/berth.csi.dev/ro/globalmount');
      await rpc(d.clients.node, 'NodeStageVolume', {
        volume_id: volume.volume_id,
        staging_target_path: staging,
        volume_capability: blockCap('SINGLE_NODE_WRITER'),
        publish_context: pub.publish_context,
      });
      try {
        const device = (await exec('findmnt', ['-n', '-o', 'SOURCE', path.join(staging, 'device')])).stdout.trim();
        const loop = device.startsWith('/dev/loop') ? device : `/dev${device.split('[').at(-1)?.replace(']', '')}`;
        expect((await exec('blockdev', ['--getro', loop])).stdout.trim()).to.equal('1');
      } finally {
        await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: volume.volume_id, staging_target_path: staging });
      }
      await rpc(c(), 'ControllerUnpublishVolume', { volume_id: volume.volume_id, node_id: 'node-a' });
    });
  });
}
