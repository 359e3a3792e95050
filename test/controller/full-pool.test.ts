// Honest capacity on a pool filled to the last byte: a real 128 MiB ext4
// pool, real fallocate reservations, real writes through raw block volumes.
import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { blockCap, Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { FreshFilesystem } from '../helpers/fresh-fs.js';
import { exec, HostState } from '../helpers/host.js';
import { KubeletPaths, podUid } from '../helpers/kubelet.js';

const MiB = 1024 * 1024;

describe('a pool filled to the last byte (a 128 MiB ext4 pool: real fallocate, real writes)', function () {
  this.timeout(120_000);
  let pool: FreshFilesystem;
  let d: DriverProcess;
  let k: KubeletPaths;
  let host: HostState;
  const poolDir = () => path.join(pool.mountpoint, 'pool');
  const free = async () => {
    const st = await fs.statfs(pool.mountpoint);
    return st.bavail * st.bsize;
  };
  const create = (name: string, bytes: number, provisioning?: 'thin' | 'thick') =>
    rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', {
      name,
      capacity_range: { required_bytes: bytes },
      volume_capabilities: [blockCap()],
      parameters: { kind: 'block', ...(provisioning ? { provisioning } : {}) },
    });
  const capacity = async (provisioning: 'thin' | 'thick') =>
    Number(
      (await rpc<{ available_capacity: string }>(d.clients.controller, 'GetCapacity', { parameters: { kind: 'block', provisioning } }))
        .available_capacity,
    );
  const del = (id: string) => rpc(d.clients.controller, 'DeleteVolume', { volume_id: id });

  before(async () => {
    host = await HostState.capture();
    pool = await FreshFilesystem.make(undefined, { bytes: 128 * MiB });
    d = await DriverProcess.start({ mode: 'all', poolDir: poolDir(), extraArgs: ['--thin-overprovision', '2'] });
    k = new KubeletPaths(d.kubeletDir);
  });
  after(async () => {
    await d?.cleanup();
    await pool?.remove();
    expect(await host.leaks()).to.deep.equal({ loops: [], mounts: [] });
  });

  it('reserves a thick image in full at create: the one that no longer fits is RESOURCE_EXHAUSTED, nothing half-made left', async () => {
    const before = await free();
    const a = (await create('pvc-thick-a', 48 * MiB)).volume.volume_id;
    expect(before - (await free()), 'reserved, though nothing is written').to.be.at.least(48 * MiB);
    expect((await capacity('thick')) - (await free())).to.be.lessThan(MiB);
    const b = (await create('pvc-thick-b', 48 * MiB)).volume.volume_id;
    const err = await expectCode(create('pvc-thick-c', 48 * MiB), Code.RESOURCE_EXHAUSTED);
    expect(err.details).to.match(/bytes free|no room/);
    const entries = (await fs.readdir(path.join(poolDir(), 'volumes'))).sort();
    expect(entries).to.deep.equal(['pvc-thick-a.img', 'pvc-thick-a.json', 'pvc-thick-b.img', 'pvc-thick-b.json']);
    expect(await fs.readdir(path.join(poolDir(), '.tmp'))).to.deep.equal([]);
    // Growing beyond the pool: refused, and neither the image nor the pool's free space changed (a
    // failed fallocate keeps what it took, and extends the file: never left so).
    const image = path.join(poolDir(), 'volumes', 'pvc-thick-a.img');
    const [sizeBefore, freeBefore] = [(await fs.stat(image)).size, await free()];
    await expectCode(
      rpc(d.clients.controller, 'ControllerExpandVolume', { volume_id: a, capacity_range: { required_bytes: 4 * 1024 * MiB } }),
      Code.RESOURCE_EXHAUSTED,
    );
    expect((await fs.stat(image)).size).to.equal(sizeBefore);
    expect(Math.abs((await free()) - freeBefore)).to.be.lessThan(MiB);
    await del(a);
    await del(b);
  });

  // ext4 only: xfs and btrfs need images larger than this pool (300 and 109 MiB at least).
  for (const fsType of ['ext4']) {
    it(`keeps a thick image reserved in full after its first stage formats it ${fsType} (mkfs without discard)`, async () => {
      const id = (await create(`pvc-thick-${fsType}`, 40 * MiB)).volume.volume_id;
      const image = path.join(poolDir(), 'volumes', `pvc-thick-${fsType}.img`);
      const allocated = async () => (await fs.stat(image)).blocks * 512;
      expect(await allocated()).to.be.at.least(40 * MiB);
      const staging = k.staging(id);
      await k.prepareStage(staging);
      await rpc(d.clients.node, 'NodeStageVolume', {
        volume_id: id,
        staging_target_path: staging,
        volume_capability: mountCap(undefined, fsType),
      });
      expect(await allocated(), 'a discard would have punched the reservation out').to.be.at.least(40 * MiB);
      await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
      await del(id);
    });
  }

  it('bounds thin images by the overprovisioning limit, and reports them abnormal while the pool fills, before a write fails', async () => {
    const st = await fs.statfs(pool.mountpoint);
    const total = st.blocks * st.bsize;
    const limit = 2 * total;
    // Together more than the pool (thin), within twice its size (the limit).
    const t1 = (await create('pvc-thin-1', 120 * MiB, 'thin')).volume.volume_id;
    const t2 = (await create('pvc-thin-2', 96 * MiB, 'thin')).volume.volume_id;
    expect(await capacity('thin')).to.equal(limit - 216 * MiB);
    await expectCode(create('pvc-thin-3', limit - 216 * MiB + MiB, 'thin'), Code.RESOURCE_EXHAUSTED);

    const staging = k.blockStaging('pv-thin-1');
    await k.prepareStage(staging);
    await rpc(d.clients.node, 'NodeStageVolume', { volume_id: t1, staging_target_path: staging, volume_capability: blockCap() });
    const uid = podUid();
    const target = k.blockTarget('pv-thin-1', uid);
    await k.preparePublish(target);
    await rpc(d.clients.node, 'NodePublishVolume', {
      volume_id: t1,
      staging_target_path: staging,
      target_path: target,
      volume_capability: blockCap(),
    });
    type Stats = { volume_condition: { abnormal: boolean; message: string } };
    const condition = async () =>
      (await rpc<Stats>(d.clients.node, 'NodeGetVolumeStats', { volume_id: t1, volume_path: target })).volume_condition;
    const write = (mib: number, seekMib = 0) =>
      exec('dd', ['if=/dev/urandom', `of=${target}`, 'bs=1M', `count=${mib}`, `seek=${seekMib}`, 'oflag=direct', 'conv=notrunc,fsync']);

    await write(40);
    expect(await condition()).to.deep.include({ abnormal: false });
    // All but the last 8 MiB of the pool: every write succeeds, and the volume says it is in danger.
    const room = Math.floor((await free()) / MiB) - 8;
    expect(40 + room, 'the thin volume is large enough to fill the pool').to.be.at.most(120);
    await write(room, 40);
    expect(await free()).to.be.lessThan(16 * MiB);
    const full = await condition();
    expect(full.abnormal, 'abnormal once the pool is nearly full').to.equal(true);
    expect(full.message).to.contain('nearly full');
    const controllerSays = await rpc<{ status: { volume_condition: { abnormal: boolean } } }>(d.clients.controller, 'ControllerGetVolume', {
      volume_id: t1,
    });
    expect(controllerSays.status.volume_condition.abnormal).to.equal(true);

    await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: t1, target_path: target });
    await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: t1, staging_target_path: staging });
    await del(t1);
    await del(t2);
  });
});
