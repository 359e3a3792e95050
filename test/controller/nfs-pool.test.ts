// The controller on NFS pools, against a real nfs-ganesha on loopback. The
// controller never mounts anything: it provisions over the NFS protocol,
// and the export's directory is inspected here from the server side.

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { Ganesha } from '../helpers/ganesha.js';
import { sha256File } from '../helpers/host.js';
import { StandInApiServer } from '../helpers/stand-in-api-server.js';

/** The name of a directory's claim on the export (controller/nfs-pool.ts). */
const claimName = (subDir: string) => createHash('sha256').update(subDir).digest('hex').slice(0, 40);

interface Vol {
  volume_id: string;
  capacity_bytes: string;
  volume_context: Record<string, string>;
  accessible_topology: unknown[];
}
const MiB = 1024 * 1024;

describe('controller on an NFS pool (nfs-ganesha on loopback)', function () {
  this.timeout(120_000);
  let dir: string;
  let g: Ganesha;
  let d: DriverProcess;
  let api: StandInApiServer;
  const nfs = (extra: Record<string, string> = {}) => ({ pool: 'nfs', server: '127.0.0.1', share: g.exportPath, ...extra });
  const create = (name: string, parameters: Record<string, string>, extra: object = {}) =>
    rpc<{ volume: Vol }>(d.clients.controller, 'CreateVolume', {
      name,
      volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')],
      parameters,
      ...extra,
    });
  const createBlock = (name: string, bytes: number, parameters: Record<string, string> = nfs({ kind: 'block' })) =>
    rpc<{ volume: Vol }>(d.clients.controller, 'CreateVolume', {
      name,
      capacity_range: { required_bytes: bytes },
      volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'ext4')],
      parameters,
    });
  const onExport = (p = '') => path.join(g.exportDir, p);
  const del = (id: string) => rpc(d.clients.controller, 'DeleteVolume', { volume_id: id });

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-nfspool-'));
    g = new Ganesha(dir);
    await g.start();
    // Debug: every request and outcome is logged, so a secret in a log line would be seen.
    // The central controller: it learns the nodes from their CSINode objects.
    api = await StandInApiServer.start();
    for (const node of ['node-x', 'node-y']) api.setDriver(node, { name: 'berth.csi.dev', nodeID: node });
    d = await DriverProcess.start({ mode: 'controller', logLevel: 'debug', extraArgs: ['--kubeconfig', api.kubeconfig] });
  });
  after(async () => {
    await d?.cleanup();
    await api?.stop();
    await g?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('creates a share: a directory on the export, a record beside, no topology, what the node needs in the context', async () => {
    const { volume } = await create('pvc-nfs-1', nfs({ mountPermissions: '0770' }), { capacity_range: { required_bytes: 5 * MiB } });
    expect(volume.volume_id).to.equal(`nfs:127.0.0.1:${g.exportPath}:share:pvc-nfs-1`);
    expect(volume.accessible_topology).to.deep.equal([]);
    expect(volume.volume_context).to.include({ pool: 'nfs', kind: 'share', server: '127.0.0.1', share: g.exportPath, subDir: 'pvc-nfs-1' });
    const st = await fs.stat(onExport('pvc-nfs-1'));
    expect(st.isDirectory()).to.equal(true);
    expect(st.mode & 0o777).to.equal(0o770);
    const record = JSON.parse(await fs.readFile(onExport('.berth/volumes/pvc-nfs-1.json'), 'utf8')) as { volumeId: string };
    expect(record.volumeId).to.equal(volume.volume_id);
    expect(
      (await create('pvc-nfs-1', nfs({ mountPermissions: '0770' }), { capacity_range: { required_bytes: 5 * MiB } })).volume,
    ).to.deep.equal(volume);
    await expectCode(create('pvc-nfs-1', nfs()), Code.ALREADY_EXISTS);
  });

  it('creates a block volume as a sparse image of exactly the asked size, made over the protocol', async () => {
    const { volume } = await createBlock('pvc-nfs-img', 100 * MiB);
    const st = await fs.stat(onExport('pvc-nfs-img/disk.img'));
    expect(st.size).to.equal(100 * MiB);
    expect(st.blocks).to.equal(0);
    expect(volume.volume_context).to.include({ kind: 'block', fsType: 'ext4', subDir: 'pvc-nfs-img' });
  });

  it('names directories by the subDir template', async () => {
    const { volume } = await create('pvc-tmpl', {
      ...nfs({ subDir: '${pvc.metadata.namespace}/${pvc.metadata.name}-${pv.metadata.name}' }),
      'csi.storage.k8s.io/pvc/name': 'data',
      'csi.storage.k8s.io/pvc/namespace': 'team-a',
      'csi.storage.k8s.io/pv/name': 'pvc-tmpl',
    });
    expect(volume.volume_context.subDir).to.equal('team-a/data-pvc-tmpl');
    expect((await fs.stat(onExport('team-a/data-pvc-tmpl'))).isDirectory()).to.equal(true);
    await del(volume.volume_id);
    expect(await fs.stat(onExport('team-a/data-pvc-tmpl')).catch(() => null)).to.equal(null);
  });

  it('refuses every attempt to escape the share', async () => {
    const meta = (name: string) => ({ 'csi.storage.k8s.io/pvc/name': name, 'csi.storage.k8s.io/pvc/namespace': 'ns' });
    const attempts: Array<Record<string, string>> = [
      nfs({ subDir: '../outside' }),
      nfs({ subDir: '/etc' }),
      nfs({ subDir: 'a/../../b' }),
      nfs({ subDir: 'x/./y' }),
      nfs({ subDir: '.berth/volumes' }),
      nfs({ subDir: 'n'.repeat(256) }),
      nfs({ subDir: '${secret.value}' }),
      { ...nfs({ subDir: '${pvc.metadata.name}' }), ...meta('..') },
      { ...nfs({ subDir: '${pvc.metadata.name}' }), ...meta('a\u0000b') },
      nfs({ subDir: '${pvc.metadata.name}' }), // no metadata to expand
      nfs({ share: 'relative' }),
      nfs({ share: '/export/../etc' }),
    ];
    const before = (await fs.readdir(onExport())).sort();
    for (const parameters of attempts) {
      await expectCode(create(`pvc-escape-${attempts.indexOf(parameters)}`, parameters), Code.INVALID_ARGUMENT);
    }
    expect((await fs.readdir(onExport())).sort()).to.deep.equal(before);
    expect((await fs.readdir(path.dirname(g.exportDir))).sort()).to.not.include('outside');
  });

  it('refuses unknown parameters, and NFS ones on a local pool, naming them', async () => {
    const e1 = await expectCode(create('pvc-unk', nfs({ colour: 'blue' })), Code.INVALID_ARGUMENT);
    expect(e1.details).to.contain('colour');
    const e2 = await expectCode(create('pvc-unk2', { pool: 'local', server: 'x' }), Code.INVALID_ARGUMENT);
    expect(e2.details).to.contain('"server"');
  });

  it('never adopts a directory it did not make', async () => {
    await fs.mkdir(onExport('precious'));
    await fs.writeFile(onExport('precious/data'), 'keep');
    await expectCode(create('pvc-x', nfs({ subDir: 'precious' })), Code.ALREADY_EXISTS);
    expect(await fs.readFile(onExport('precious/data'), 'utf8')).to.equal('keep');
  });

  it('honours onDelete: delete, retain, archive', async () => {
    const a = (await create('pvc-od-delete', nfs())).volume;
    const b = (await create('pvc-od-retain', nfs({ onDelete: 'retain' }))).volume;
    const c = (await create('pvc-od-archive', nfs({ onDelete: 'archive' }))).volume;
    for (const v of [a, b, c]) await fs.writeFile(onExport(`${v.volume_context.subDir}/f`), 'data');
    for (const v of [a, b, c]) await del(v.volume_id);
    expect(await fs.stat(onExport('pvc-od-delete')).catch(() => null)).to.equal(null);
    expect(await fs.readFile(onExport('pvc-od-retain/f'), 'utf8')).to.equal('data');
    const archived = (await fs.readdir(onExport())).filter((n) => n.startsWith('archived-pvc-od-archive-'));
    expect(archived).to.have.length(1);
    expect(await fs.readFile(onExport(`${archived[0]}/f`), 'utf8')).to.equal('data');
    for (const v of [a, b, c])
      expect(await fs.stat(onExport(`.berth/volumes/${v.volume_context.subDir}.json`)).catch(() => null)).to.equal(null);
    await del(a.volume_id); // again: OK
  });

  it('handles 100 concurrent creates, and 100 concurrent creates of one name', async () => {
    const res = await Promise.all(Array.from({ length: 100 }, (_, i) => create(`pvc-many-${i}`, nfs())));
    expect(new Set(res.map((r) => r.volume.volume_id)).size).to.equal(100);
    expect((await fs.readdir(onExport())).filter((n) => n.startsWith('pvc-many-'))).to.have.length(100);
    const same = await Promise.allSettled(Array.from({ length: 100 }, () => create('pvc-one', nfs())));
    const ok = same.filter((r): r is PromiseFulfilledResult<{ volume: Vol }> => r.status === 'fulfilled');
    expect(ok.length).to.be.greaterThan(0);
    for (const r of same) if (r.status === 'rejected') expect((r.reason as { code: number }).code).to.equal(Code.ABORTED);
    expect(new Set(ok.map((r) => r.value.volume.volume_id)).size).to.equal(1);
    await Promise.all(res.map((r) => del(r.volume.volume_id)));
    expect((await fs.readdir(onExport())).filter((n) => n.startsWith('pvc-many-'))).to.deep.equal([]);
  });

  it('reports capacity from FSSTAT, publishes to any node, lists NFS volumes with the local ones', async () => {
    const cap = await rpc<{ available_capacity: string }>(d.clients.controller, 'GetCapacity', { parameters: nfs() });
    const st = await fs.statfs(g.exportDir);
    expect(Math.abs(Number(cap.available_capacity) - st.bavail * st.bsize)).to.be.lessThan(st.bavail * st.bsize * 0.05);
    const { volume } = await create('pvc-pub', nfs());
    await rpc(d.clients.controller, 'ControllerPublishVolume', {
      volume_id: volume.volume_id,
      node_id: 'node-x',
      volume_capability: mountCap('MULTI_NODE_MULTI_WRITER'),
    });
    await rpc(d.clients.controller, 'ControllerPublishVolume', {
      volume_id: volume.volume_id,
      node_id: 'node-y',
      volume_capability: mountCap('MULTI_NODE_MULTI_WRITER'),
    });
    const ids: string[] = [];
    let token = '';
    do {
      const page = await rpc<{ entries: Array<{ volume: Vol; status: { published_node_ids: string[] } }>; next_token: string }>(
        d.clients.controller,
        'ListVolumes',
        { max_entries: 3, starting_token: token },
      );
      for (const e of page.entries) {
        ids.push(e.volume.volume_id);
        if (e.volume.volume_id === volume.volume_id) expect(e.status.published_node_ids.sort()).to.deep.equal(['node-x', 'node-y']);
      }
      token = page.next_token;
    } while (token);
    expect(ids).to.include(volume.volume_id);
    expect(new Set(ids).size).to.equal(ids.length);
    await expectCode(del(volume.volume_id), Code.FAILED_PRECONDITION);
    await rpc(d.clients.controller, 'ControllerUnpublishVolume', { volume_id: volume.volume_id });
    await del(volume.volume_id);
  });

  it('grows a block image over the protocol', async () => {
    const { volume } = await createBlock('pvc-nfs-grow', 64 * MiB);
    const res = await rpc<{ capacity_bytes: string; node_expansion_required: boolean }>(d.clients.controller, 'ControllerExpandVolume', {
      volume_id: volume.volume_id,
      capacity_range: { required_bytes: 96 * MiB },
    });
    expect(res).to.deep.equal({ capacity_bytes: String(96 * MiB), node_expansion_required: true });
    expect((await fs.stat(onExport('pvc-nfs-grow/disk.img'))).size).to.equal(96 * MiB);
  });

  describe('faults', () => {
    it('a server down during CreateVolume: UNAVAILABLE, and after the retry no half-made volume or stray file', async () => {
      const listing = async () => (await fs.readdir(onExport(), { recursive: true })).map(String).sort();
      const before = await listing();
      await g.stopGanesha();
      await expectCode(createBlock('pvc-fault', 64 * MiB), Code.UNAVAILABLE);
      await rpc(d.clients.identity, 'Probe'); // the driver itself is fine: no restart for a server down
      await g.startGanesha();
      const { volume } = await createBlock('pvc-fault', 64 * MiB);
      expect((await fs.stat(onExport('pvc-fault/disk.img'))).size).to.equal(64 * MiB);
      await g.stopGanesha();
      await expectCode(del(volume.volume_id), Code.UNAVAILABLE);
      await g.startGanesha();
      await del(volume.volume_id);
      expect(await listing()).to.deep.equal(before);
      await rpc(d.clients.identity, 'Probe');
    });

    it('a server that holds volumes and goes down fails only the calls that need it; ListVolumes names it; all is well once it is back', async () => {
      const { volume } = await create('pvc-down', nfs());
      await g.stopGanesha();
      try {
        await rpc(d.clients.identity, 'Probe');
        const list = await expectCode(rpc(d.clients.controller, 'ListVolumes', {}), Code.UNAVAILABLE);
        expect(list.details).to.contain(`127.0.0.1:${g.exportPath}`);
        await expectCode(rpc(d.clients.controller, 'ControllerGetVolume', { volume_id: volume.volume_id }), Code.UNAVAILABLE);
      } finally {
        await g.startGanesha();
      }
      const ids = (await rpc<{ entries: Array<{ volume: Vol }> }>(d.clients.controller, 'ListVolumes', {})).entries.map(
        (e) => e.volume.volume_id,
      );
      expect(ids).to.include(volume.volume_id);
      await del(volume.volume_id);
    });

    it('a mistyped or dead server named by a request is not kept: Probe and ListVolumes stay well', async () => {
      for (const id of ['nfs:127.0.0.2:/gone:share:pvc-typo', 'nfs:127.0.0.1@1@1:/nowhere:block:pvc-typo']) {
        await expectCode(del(id), Code.UNAVAILABLE);
        await expectCode(rpc(d.clients.controller, 'ControllerGetVolume', { volume_id: id }), Code.UNAVAILABLE);
      }
      await expectCode(create('pvc-typo', { pool: 'nfs', server: '127.0.0.2', share: '/gone' }), Code.UNAVAILABLE);
      await rpc(d.clients.identity, 'Probe');
      await rpc(d.clients.controller, 'ListVolumes', {});
    });

    it('a creation interrupted half-way is adopted by the retry, not duplicated', async () => {
      // What a crash between MKDIR and the record leaves behind: the claim and the directory.
      await fs.mkdir(onExport('.berth/claims'), { recursive: true });
      await fs.symlink('pvc-half', onExport(`.berth/claims/${claimName('pvc-half')}`));
      await fs.mkdir(onExport('pvc-half'), { mode: 0o777 });
      const { volume } = await create('pvc-half', nfs());
      expect(volume.volume_context.subDir).to.equal('pvc-half');
      await del(volume.volume_id);
      expect(await fs.stat(onExport('pvc-half')).catch(() => null)).to.equal(null);
    });
  });

  describe('a directory belongs to exactly one volume', () => {
    it("refuses a second block volume whose subDir is the first one's, and the first one's image and data are untouched", async () => {
      const { volume: a } = await createBlock('pvc-own-a', 64 * MiB, nfs({ kind: 'block', subDir: 'fixed-dir' }));
      const image = onExport('fixed-dir/disk.img');
      const fh = await fs.open(image, 'r+');
      await fh.write(randomBytes(MiB), 0, MiB, 48 * MiB); // the first volume's data, at 48 MiB
      await fh.close();
      const before = await sha256File(image);
      const err = await expectCode(createBlock('pvc-own-b', 32 * MiB, nfs({ kind: 'block', subDir: 'fixed-dir' })), Code.ALREADY_EXISTS);
      expect(err.details).to.match(/already belongs to another volume \(pvc-own-a\)/);
      expect((await fs.stat(image)).size).to.equal(64 * MiB);
      expect(await sha256File(image)).to.equal(before);
      // The refused volume does not exist: deleting it is OK and removes nothing.
      await del(`nfs:127.0.0.1:${g.exportPath}:block:pvc-own-b`);
      expect(await sha256File(image)).to.equal(before);
      await del(a.volume_id);
      expect(await fs.stat(onExport('fixed-dir')).catch(() => null)).to.equal(null);
    });

    it("refuses a share whose templated subDir expands to another volume's directory, and deleting either leaves the other whole", async () => {
      const meta = (pvc: string) => ({ 'csi.storage.k8s.io/pvc/name': pvc, 'csi.storage.k8s.io/pvc/namespace': 'team-x' });
      const params = (pvc: string) => nfs({ subDir: '${pvc.metadata.namespace}', ...meta(pvc) });
      const { volume: a } = await create('pvc-ns-a', params('data-a'));
      // While the first volume's directory is still empty (as it is right after provisioning):
      await expectCode(create('pvc-ns-b', params('data-b')), Code.ALREADY_EXISTS);
      await fs.writeFile(onExport('team-x/precious'), "a's data");
      await del(`nfs:127.0.0.1:${g.exportPath}:share:pvc-ns-b`);
      expect(await fs.readFile(onExport('team-x/precious'), 'utf8')).to.equal("a's data");
      await del(a.volume_id);
      expect(await fs.stat(onExport('team-x')).catch(() => null)).to.equal(null);
      // Once deleted, the directory can be claimed again.
      const { volume: b } = await create('pvc-ns-b', params('data-b'));
      await del(b.volume_id);
    });

    it('never adopts a directory berth did not make, even an empty one, and leaves no claim behind', async () => {
      await fs.mkdir(onExport('made-by-hand'));
      await expectCode(create('pvc-hand', nfs({ subDir: 'made-by-hand' })), Code.ALREADY_EXISTS);
      expect(await fs.readdir(onExport('.berth/claims'))).to.not.include(claimName('made-by-hand'));
      await fs.rmdir(onExport('made-by-hand'));
      const { volume } = await create('pvc-hand', nfs({ subDir: 'made-by-hand' }));
      await del(volume.volume_id);
    });
  });

  it('never shows mount options, which may carry credentials, in a message or a log line', async () => {
    const secret = 'password=hunter2-nfs';
    const { volume } = await create('pvc-secret-opts', nfs({ mountOptions: `nfsvers=4.1,${secret}` }));
    const again = await expectCode(create('pvc-secret-opts', nfs({ mountOptions: 'nfsvers=3' })), Code.ALREADY_EXISTS);
    expect(again.details).to.contain('mountOptions differ');
    const validated = await rpc<{ message: string }>(d.clients.controller, 'ValidateVolumeCapabilities', {
      volume_id: volume.volume_id,
      volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')],
      parameters: nfs({ mountOptions: 'nfsvers=3' }),
    });
    expect(validated.message).to.contain('mountOptions');
    for (const text of [again.details, validated.message, d.stderr]) expect(text).to.not.contain('hunter2');
    expect(d.stderr, 'the log has the calls').to.contain('ValidateVolumeCapabilities');
    await del(volume.volume_id);
  });
});
