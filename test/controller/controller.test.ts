// The controller service on a local pool, over the real unix socket.

import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { imageHasData } from '../../host/data-check.js';
import { blockCap, Code, expectCode, mountCap, rpc, rpcStream } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';

const KEY = 'topology.berth.csi.dev/node';
const GiB = 1024 ** 3;

interface Vol {
  volume_id: string;
  capacity_bytes: string;
  volume_context: Record<string, string>;
  accessible_topology: Array<{ segments: Record<string, string> }>;
}

describe('controller on a local pool', () => {
  let d: DriverProcess;
  const create = (req: object) => rpc<{ volume: Vol }>(d.clients.controller, 'CreateVolume', req);
  const share = (name: string, extra: object = {}) =>
    create({ name, volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')], ...extra });
  const block = (name: string, bytes = 64 << 20, extra: object = {}) =>
    create({
      name,
      capacity_range: { required_bytes: bytes },
      volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'ext4')],
      parameters: { kind: 'block' },
      ...extra,
    });

  before(async () => {
    d = await DriverProcess.start({ mode: 'all', extraArgs: ['--self-register=false'] });
  });
  after(async () => d.cleanup());

  describe('identity', () => {
    it('reports its name and the version from package.json', async () => {
      const pkg = JSON.parse(await fs.readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
      const info = await rpc<{ name: string; vendor_version: string }>(d.clients.identity, 'GetPluginInfo');
      expect(info).to.include({ name: 'berth.csi.dev', vendor_version: pkg.version });
    });

    it('offers the controller service and topology constraints', async () => {
      const res = await rpc<{ capabilities: Array<{ service?: { type: string } }> }>(d.clients.identity, 'GetPluginCapabilities');
      const types = res.capabilities.map((c) => c.service?.type).filter(Boolean);
      expect(types).to.include.members(['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS', 'GROUP_CONTROLLER_SERVICE']);
      // Changed-block tracking is opt-in (--snapshot-metadata): neither advertised nor served here.
      expect(types).to.not.include('SNAPSHOT_METADATA_SERVICE');
      await expectCode(rpcStream(d.clients.snapshotMetadata, 'GetMetadataAllocated', { snapshot_id: 'x' }), Code.UNIMPLEMENTED);
    });

    it('Probe answers FAILED_PRECONDITION with the reason when the pool is gone', async () => {
      const vols = path.join(d.poolDir, 'volumes');
      await fs.rename(vols, `${vols}.away`);
      try {
        const err = await expectCode(rpc(d.clients.identity, 'Probe'), Code.FAILED_PRECONDITION);
        expect(err.details).to.contain(d.poolDir);
      } finally {
        await fs.rename(`${vols}.away`, vols);
      }
      expect(await rpc(d.clients.identity, 'Probe')).to.deep.include({ ready: { value: true } });
    });

    it('lists controller capabilities, never empty', async () => {
      const res = await rpc<{ capabilities: Array<{ rpc: { type: string } }> }>(d.clients.controller, 'ControllerGetCapabilities');
      expect(res.capabilities.map((c) => c.rpc.type)).to.include.members([
        'CREATE_DELETE_VOLUME',
        'PUBLISH_UNPUBLISH_VOLUME',
        'LIST_VOLUMES',
        'GET_CAPACITY',
      ]);
    });
  });

  describe('CreateVolume', () => {
    it('creates a share: a directory with the topology of the pool node', async () => {
      const { volume } = await share('pvc-share-1', { capacity_range: { required_bytes: GiB } });
      expect(volume.volume_id).to.equal('local:node-a:share:pvc-share-1');
      expect(Buffer.byteLength(volume.volume_id)).to.be.at.most(128);
      expect(volume.capacity_bytes).to.equal(String(GiB));
      expect(volume.accessible_topology).to.deep.equal([{ segments: { [KEY]: 'node-a' } }]);
      expect(volume.volume_context).to.include({ kind: 'share', pool: 'local' });
      const st = await fs.stat(path.join(d.poolDir, 'volumes/pvc-share-1'));
      expect(st.isDirectory()).to.equal(true);
      expect(st.mode & 0o7777).to.equal(0o777);
    });

    it('creates a block volume as an image of exactly the asked size, reserved in full (thick) with no data written', async () => {
      const { volume } = await block('pvc-block-1', 100 * 1024 * 1024);
      const image = path.join(d.poolDir, 'volumes/pvc-block-1.img');
      const st = await fs.stat(image);
      expect(st.size).to.equal(100 * 1024 * 1024);
      expect(st.blocks * 512, 'reserved').to.be.at.least(100 * 1024 * 1024);
      expect(await imageHasData(image), 'unwritten extents only').to.equal(false);
      expect(volume.capacity_bytes).to.equal(String(100 * 1024 * 1024));
      expect(volume.volume_context).to.include({ kind: 'block', fsType: 'ext4' });
    });

    it('creates a thin block volume as a sparse image', async () => {
      await block('pvc-block-thin', 100 * 1024 * 1024, { parameters: { kind: 'block', provisioning: 'thin' } });
      expect((await fs.stat(path.join(d.poolDir, 'volumes/pvc-block-thin.img'))).blocks).to.equal(0);
    });

    it('returns the same volume for the same name and compatible arguments', async () => {
      const a = await block('pvc-idem', 64 << 20);
      const b = await block('pvc-idem', 64 << 20, { capacity_range: { required_bytes: 32 << 20, limit_bytes: 128 << 20 } });
      expect(b.volume).to.deep.equal(a.volume);
    });

    it('answers ALREADY_EXISTS for the same name with incompatible arguments', async () => {
      await block('pvc-incompat', 64 << 20);
      await expectCode(block('pvc-incompat', 128 << 20), Code.ALREADY_EXISTS);
      await expectCode(share('pvc-incompat'), Code.ALREADY_EXISTS);
      await expectCode(block('pvc-incompat', 64 << 20, { parameters: { kind: 'block', onDelete: 'retain' } }), Code.ALREADY_EXISTS);
      await expectCode(
        create({
          name: 'pvc-incompat',
          capacity_range: { required_bytes: 512 << 20 },
          volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'xfs')],
          parameters: { kind: 'block' },
        }),
        Code.ALREADY_EXISTS,
      );
    });

    it('never gives two distinct names one place on disk (x and x.json, y and y.img)', async () => {
      const x = (await share('x')).volume.volume_id;
      const xJson = (await share('x.json')).volume.volume_id;
      const y = (await block('y', 8 << 20)).volume.volume_id;
      const yImg = (await block('y.img', 8 << 20)).volume.volume_id;
      expect(new Set([x, xJson, y, yImg]).size).to.equal(4);
      for (const id of [x, xJson, y, yImg]) {
        const got = await rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'ControllerGetVolume', { volume_id: id });
        expect(got.volume.volume_id).to.equal(id);
        await rpc(d.clients.controller, 'DeleteVolume', { volume_id: id });
      }
    });

    it('accepts the external-provisioner metadata keys', async () => {
      const { volume } = await share('pvc-meta', {
        parameters: {
          'csi.storage.k8s.io/pvc/name': 'data',
          'csi.storage.k8s.io/pvc/namespace': 'db',
          'csi.storage.k8s.io/pv/name': 'pvc-meta',
        },
      });
      expect(volume.volume_id).to.contain('pvc-meta');
    });

    it('rejects an unknown parameter naming it', async () => {
      const err = await expectCode(share('pvc-bad-param', { parameters: { kind: 'share', colour: 'blue' } }), Code.INVALID_ARGUMENT);
      expect(err.details).to.contain('colour');
      await expectCode(share('pvc-bad-kind', { parameters: { kind: 'tape' } }), Code.INVALID_ARGUMENT);
    });

    it('rejects missing or invalid fields with INVALID_ARGUMENT', async () => {
      await expectCode(create({ volume_capabilities: [mountCap()] }), Code.INVALID_ARGUMENT);
      await expectCode(create({ name: 'pvc-nocap' }), Code.INVALID_ARGUMENT);
      await expectCode(create({ name: 'x'.repeat(129), volume_capabilities: [mountCap()] }), Code.INVALID_ARGUMENT);
      await expectCode(create({ name: 'bad\u0001name', volume_capabilities: [mountCap()] }), Code.INVALID_ARGUMENT);
      await expectCode(share('pvc-range', { capacity_range: { required_bytes: 10, limit_bytes: 5 } }), Code.INVALID_ARGUMENT);
      await expectCode(create({ name: 'pvc-raw-share', volume_capabilities: [blockCap()] }), Code.INVALID_ARGUMENT);
      await expectCode(
        create({ name: 'pvc-rwx-block', volume_capabilities: [blockCap('MULTI_NODE_MULTI_WRITER')], parameters: { kind: 'block' } }),
        Code.INVALID_ARGUMENT,
      );
      // A clone of another kind (a share's tree into a block image).
      await expectCode(
        block('pvc-clone', 64 << 20, { volume_content_source: { volume: { volume_id: 'local:node-a:share:pvc-share-1' } } }),
        Code.INVALID_ARGUMENT,
      );
      await expectCode(block('pvc-zfs', 64 << 20, { volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'zfs')] }), Code.INVALID_ARGUMENT);
    });

    it('answers OUT_OF_RANGE for sizes the kind cannot honour', async () => {
      await expectCode(block('pvc-tiny', 4096), Code.OUT_OF_RANGE);
      await expectCode(
        create({
          name: 'pvc-tiny-xfs',
          capacity_range: { required_bytes: 100 << 20 },
          volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'xfs')],
          parameters: { kind: 'block' },
        }),
        Code.OUT_OF_RANGE,
      );
      await expectCode(
        block('pvc-odd', 0, { capacity_range: { required_bytes: (64 << 20) + 1, limit_bytes: (64 << 20) + 1 } }),
        Code.OUT_OF_RANGE,
      );
      await expectCode(block('pvc-huge', 0, { capacity_range: { required_bytes: '9223372036854775807' } }), Code.OUT_OF_RANGE);
    });

    it('answers RESOURCE_EXHAUSTED when the pool has no room or topology excludes its node', async () => {
      await expectCode(block('pvc-petabyte', 2 ** 50), Code.RESOURCE_EXHAUSTED);
      await expectCode(
        share('pvc-elsewhere', { accessibility_requirements: { requisite: [{ segments: { [KEY]: 'node-b' } }] } }),
        Code.RESOURCE_EXHAUSTED,
      );
      const { volume } = await share('pvc-here', {
        accessibility_requirements: {
          requisite: [{ segments: { [KEY]: 'node-b' } }, { segments: { [KEY]: 'node-a' } }],
          preferred: [{ segments: { [KEY]: 'node-a' } }],
        },
      });
      expect(volume.accessible_topology[0]?.segments[KEY]).to.equal('node-a');
    });

    it('turns 100 concurrent creates of one name into exactly one volume', async () => {
      const results = await Promise.allSettled(Array.from({ length: 100 }, () => block('pvc-race', 64 << 20)));
      const ok = results.filter((r): r is PromiseFulfilledResult<{ volume: Vol }> => r.status === 'fulfilled');
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(ok.length).to.be.greaterThan(0);
      for (const f of failed) expect((f.reason as { code: number }).code).to.equal(Code.ABORTED);
      expect(new Set(ok.map((r) => r.value.volume.volume_id)).size).to.equal(1);
      const again = await block('pvc-race', 64 << 20);
      expect(again.volume.volume_id).to.equal(ok[0]!.value.volume.volume_id);
      const dirs = (await fs.readdir(path.join(d.poolDir, 'volumes'))).filter((n) => n.startsWith('pvc-race'));
      expect(dirs.sort()).to.deep.equal(['pvc-race.img', 'pvc-race.json']);
      expect(await fs.readdir(path.join(d.poolDir, '.tmp'))).to.deep.equal([]);
    });

    it('creates different volumes in parallel', async () => {
      const names = Array.from({ length: 40 }, (_, i) => `pvc-par-${i}`);
      const res = await Promise.all(names.map((n) => share(n)));
      expect(new Set(res.map((r) => r.volume.volume_id)).size).to.equal(40);
    });
  });

  describe('DeleteVolume', () => {
    it('deletes, and answers OK again for the same or an unknown id', async () => {
      const { volume } = await block('pvc-del', 64 << 20);
      await rpc(d.clients.controller, 'DeleteVolume', { volume_id: volume.volume_id });
      expect((await fs.readdir(path.join(d.poolDir, 'volumes'))).filter((n) => n.startsWith('pvc-del'))).to.deep.equal([]);
      await rpc(d.clients.controller, 'DeleteVolume', { volume_id: volume.volume_id });
      await rpc(d.clients.controller, 'DeleteVolume', { volume_id: 'local:node-a:share:never-was' });
      await rpc(d.clients.controller, 'DeleteVolume', { volume_id: 'garbage' });
      await expectCode(rpc(d.clients.controller, 'DeleteVolume', {}), Code.INVALID_ARGUMENT);
    });

    it("refuses to forget a volume of another node's pool", async () => {
      await expectCode(rpc(d.clients.controller, 'DeleteVolume', { volume_id: 'local:node-b:share:pvc-x' }), Code.FAILED_PRECONDITION);
    });

    it('keeps the data with onDelete retain and archive', async () => {
      for (const mode of ['retain', 'archive']) {
        const { volume } = await share(`pvc-keep-${mode}`, { parameters: { onDelete: mode } });
        await fs.writeFile(path.join(d.poolDir, `volumes/pvc-keep-${mode}/file`), mode);
        await rpc(d.clients.controller, 'DeleteVolume', { volume_id: volume.volume_id });
        const keptIn = path.join(d.poolDir, mode === 'retain' ? 'retained' : 'archived');
        const kept = (await fs.readdir(keptIn)).filter((n) => n.startsWith(`pvc-keep-${mode}`)).sort();
        expect(kept, mode).to.have.length(2); // the data and its record
        expect(await fs.readFile(path.join(keptIn, kept[0]!, 'file'), 'utf8')).to.equal(mode);
        expect(JSON.parse(await fs.readFile(path.join(keptIn, kept[1]!), 'utf8'))).to.include({ name: `pvc-keep-${mode}` });
      }
    });

    it('answers FAILED_PRECONDITION while the volume is published', async () => {
      const { volume } = await share('pvc-busy');
      await rpc(d.clients.controller, 'ControllerPublishVolume', {
        volume_id: volume.volume_id,
        node_id: 'node-a',
        volume_capability: mountCap(),
      });
      await expectCode(rpc(d.clients.controller, 'DeleteVolume', { volume_id: volume.volume_id }), Code.FAILED_PRECONDITION);
      await rpc(d.clients.controller, 'ControllerUnpublishVolume', { volume_id: volume.volume_id, node_id: 'node-a' });
      await rpc(d.clients.controller, 'DeleteVolume', { volume_id: volume.volume_id });
    });
  });

  describe('ControllerPublishVolume / ControllerUnpublishVolume', () => {
    let id: string;
    before(async () => {
      id = (await block('pvc-attach', 64 << 20)).volume.volume_id;
    });

    it('publishes idempotently with a publish_context for the node', async () => {
      const req = { volume_id: id, node_id: 'node-a', volume_capability: mountCap() };
      const a = await rpc<{ publish_context: Record<string, string> }>(d.clients.controller, 'ControllerPublishVolume', req);
      const b = await rpc<{ publish_context: Record<string, string> }>(d.clients.controller, 'ControllerPublishVolume', req);
      expect(a.publish_context).to.deep.equal({ kind: 'block' });
      expect(b).to.deep.equal(a);
    });

    it('answers ALREADY_EXISTS when published incompatibly', async () => {
      await expectCode(
        rpc(d.clients.controller, 'ControllerPublishVolume', {
          volume_id: id,
          node_id: 'node-a',
          volume_capability: mountCap('SINGLE_NODE_READER_ONLY'),
        }),
        Code.ALREADY_EXISTS,
      );
    });

    it('answers NOT_FOUND for an unknown volume or node', async () => {
      await expectCode(
        rpc(d.clients.controller, 'ControllerPublishVolume', {
          volume_id: 'local:node-a:block:nope',
          node_id: 'node-a',
          volume_capability: mountCap(),
        }),
        Code.NOT_FOUND,
      );
      await expectCode(
        rpc(d.clients.controller, 'ControllerPublishVolume', { volume_id: id, node_id: 'node-z', volume_capability: mountCap() }),
        Code.NOT_FOUND,
      );
      await expectCode(rpc(d.clients.controller, 'ControllerPublishVolume', { volume_id: id, node_id: 'node-a' }), Code.INVALID_ARGUMENT);
    });

    it('lists the published node ids', async () => {
      const { volume, status } = await rpc<{ volume: Vol; status: { published_node_ids: string[] } }>(
        d.clients.controller,
        'ControllerGetVolume',
        { volume_id: id },
      );
      expect(volume.volume_id).to.equal(id);
      expect(status.published_node_ids).to.deep.equal(['node-a']);
    });

    it('unpublishes idempotently, also for a gone volume', async () => {
      await rpc(d.clients.controller, 'ControllerUnpublishVolume', { volume_id: id, node_id: 'node-a' });
      await rpc(d.clients.controller, 'ControllerUnpublishVolume', { volume_id: id, node_id: 'node-a' });
      await rpc(d.clients.controller, 'ControllerUnpublishVolume', { volume_id: 'local:node-a:block:gone', node_id: 'node-a' });
      const { status } = await rpc<{ status: { published_node_ids: string[] } }>(d.clients.controller, 'ControllerGetVolume', {
        volume_id: id,
      });
      expect(status.published_node_ids).to.deep.equal([]);
    });
  });

  describe('inspection', () => {
    it('ValidateVolumeCapabilities confirms what the kind supports and explains what it does not', async () => {
      const id = (await block('pvc-validate', 64 << 20)).volume.volume_id;
      const ok = await rpc<{ confirmed: object | null; message: string }>(d.clients.controller, 'ValidateVolumeCapabilities', {
        volume_id: id,
        volume_capabilities: [blockCap(), mountCap('SINGLE_NODE_WRITER', 'ext4')],
      });
      expect(ok.confirmed).to.not.equal(null);
      const no = await rpc<{ confirmed: object | null; message: string }>(d.clients.controller, 'ValidateVolumeCapabilities', {
        volume_id: id,
        volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')],
      });
      expect(no.confirmed).to.equal(null);
      expect(no.message).to.contain('single-node');
      await expectCode(
        rpc(d.clients.controller, 'ValidateVolumeCapabilities', {
          volume_id: 'local:node-a:share:nope',
          volume_capabilities: [mountCap()],
        }),
        Code.NOT_FOUND,
      );
      await expectCode(rpc(d.clients.controller, 'ValidateVolumeCapabilities', { volume_id: id }), Code.INVALID_ARGUMENT);
    });

    it('GetCapacity reports the pool filesystem free space, and 0 for another topology', async () => {
      const res = await rpc<{ available_capacity: string }>(d.clients.controller, 'GetCapacity', { parameters: { kind: 'block' } });
      const st = await fs.statfs(d.poolDir);
      const free = st.bavail * st.bsize;
      expect(Math.abs(Number(res.available_capacity) - free)).to.be.lessThan(free * 0.05);
      const other = await rpc<{ available_capacity: string }>(d.clients.controller, 'GetCapacity', {
        accessible_topology: { segments: { [KEY]: 'node-b' } },
      });
      expect(other.available_capacity).to.equal('0');
      await expectCode(rpc(d.clients.controller, 'GetCapacity', { parameters: { bogus: '1' } }), Code.INVALID_ARGUMENT);
    });

    it('ControllerGetVolume reports an abnormal condition when the bytes are gone', async () => {
      const id = (await share('pvc-condition')).volume.volume_id;
      type Res = { status: { volume_condition: { abnormal: boolean; message: string } } };
      expect((await rpc<Res>(d.clients.controller, 'ControllerGetVolume', { volume_id: id })).status.volume_condition.abnormal).to.equal(
        false,
      );
      await fs.rmdir(path.join(d.poolDir, 'volumes/pvc-condition'));
      const sick = await rpc<Res>(d.clients.controller, 'ControllerGetVolume', { volume_id: id });
      expect(sick.status.volume_condition).to.deep.include({ abnormal: true });
      expect(sick.status.volume_condition.message).to.contain('missing');
      await expectCode(rpc(d.clients.controller, 'ControllerGetVolume', { volume_id: 'local:node-a:share:nope' }), Code.NOT_FOUND);
    });
  });

  describe('ListVolumes', () => {
    type Page = { entries: Array<{ volume: Vol; status: { published_node_ids: string[] } }>; next_token: string };
    const list = (max_entries: number, starting_token = '') =>
      rpc<Page>(d.clients.controller, 'ListVolumes', { max_entries, starting_token });

    it('paginates across pages while volumes are added and deleted', async () => {
      const names = Array.from({ length: 25 }, (_, i) => `pvc-list-${String(i).padStart(2, '0')}`);
      const ids = new Map<string, string>();
      for (const n of names) ids.set(n, (await share(n)).volume.volume_id);
      const seen: string[] = [];
      let token = '';
      let pages = 0;
      do {
        const page = await list(7, token);
        expect(page.entries.length).to.be.at.most(7);
        seen.push(...page.entries.map((e) => e.volume.volume_id));
        token = page.next_token;
        if (pages === 1) {
          // Between pages: delete one not yet seen and one already seen, add one.
          await rpc(d.clients.controller, 'DeleteVolume', { volume_id: ids.get('pvc-list-20') });
          await rpc(d.clients.controller, 'DeleteVolume', { volume_id: ids.get('pvc-list-00') });
          await share('pvc-list-99');
        }
        pages++;
      } while (token);
      expect(pages).to.be.greaterThan(3);
      expect(new Set(seen).size, 'no duplicates').to.equal(seen.length);
      const listed = seen.filter((id) => id.includes('pvc-list-'));
      for (const n of names.filter((n) => n !== 'pvc-list-20')) expect(listed).to.include(ids.get(n));
      expect(listed).to.not.include(ids.get('pvc-list-20'));
      expect(listed).to.include('local:node-a:share:pvc-list-99');
    });

    it('lists every volume when max_entries is 0', async () => {
      const all = await list(0);
      expect(all.next_token).to.equal('');
      const records = (await fs.readdir(path.join(d.poolDir, 'volumes'))).filter((n) => n.endsWith('.json'));
      expect(all.entries.length).to.equal(records.length);
    });

    it('answers ABORTED for a token it did not issue', async () => {
      await expectCode(list(5, 'not-a-token'), Code.ABORTED);
      await expectCode(list(5, Buffer.from('v2:x').toString('base64url')), Code.ABORTED);
    });
  });

  describe('ControllerExpandVolume', () => {
    it('grows a block image and asks for node expansion', async () => {
      const id = (await block('pvc-grow', 64 << 20)).volume.volume_id;
      const res = await rpc<{ capacity_bytes: string; node_expansion_required: boolean }>(d.clients.controller, 'ControllerExpandVolume', {
        volume_id: id,
        capacity_range: { required_bytes: 96 << 20 },
      });
      expect(res).to.deep.equal({ capacity_bytes: String(96 << 20), node_expansion_required: true });
      expect((await fs.stat(path.join(d.poolDir, 'volumes/pvc-grow.img'))).size).to.equal(96 << 20);
      const again = await rpc<{ capacity_bytes: string }>(d.clients.controller, 'ControllerExpandVolume', {
        volume_id: id,
        capacity_range: { required_bytes: 80 << 20 },
      });
      expect(again.capacity_bytes).to.equal(String(96 << 20));
      await expectCode(
        rpc(d.clients.controller, 'ControllerExpandVolume', {
          volume_id: 'local:node-a:block:nope',
          capacity_range: { required_bytes: 1 },
        }),
        Code.NOT_FOUND,
      );
    });
  });

  describe('state lives in the pool', () => {
    it('sees every volume and attachment after SIGKILL and restart', async () => {
      const { volume } = await share('pvc-survivor');
      await rpc(d.clients.controller, 'ControllerPublishVolume', {
        volume_id: volume.volume_id,
        node_id: 'node-a',
        volume_capability: mountCap(),
      });
      const before = await rpc<{ entries: unknown[] }>(d.clients.controller, 'ListVolumes', {});
      await d.restart('SIGKILL');
      const afterList = await rpc<{ entries: unknown[] }>(d.clients.controller, 'ListVolumes', {});
      expect(afterList.entries).to.deep.equal(before.entries);
      const { status } = await rpc<{ status: { published_node_ids: string[] } }>(d.clients.controller, 'ControllerGetVolume', {
        volume_id: volume.volume_id,
      });
      expect(status.published_node_ids).to.deep.equal(['node-a']);
    });

    it('sweeps half-made volumes left by a crash, and never anything holding data', async () => {
      const at = (p: string) => path.join(d.poolDir, p);
      await fs.writeFile(at('.tmp/pvc-half.json.1234-1'), '{"half":'); // a record being written
      await fs.mkdir(at('volumes/pvc-half-share')); // data claimed, no record yet
      await fs.writeFile(at('volumes/pvc-half-block.img'), ''); // likewise, a sparse image
      await fs.truncate(at('volumes/pvc-half-block.img'), 64 << 20);
      await fs.mkdir(at('volumes/pvc-orphan-full'));
      await fs.writeFile(at('volumes/pvc-orphan-full/precious'), 'keep me');
      await fs.writeFile(at('volumes/pvc-orphan-written.img'), 'keep me too');
      await d.restart('SIGKILL');
      expect(await fs.readdir(at('.tmp'))).to.deep.equal([]);
      const left = (await fs.readdir(at('volumes'))).filter((n) => /^pvc-(half|orphan)/.test(n)).sort();
      expect(left).to.deep.equal(['pvc-orphan-full', 'pvc-orphan-written.img']);
      expect(await fs.readFile(at('volumes/pvc-orphan-full/precious'), 'utf8')).to.equal('keep me');
      await expectCode(
        rpc(d.clients.controller, 'ControllerGetVolume', { volume_id: 'local:node-a:share:pvc-half-share' }),
        Code.NOT_FOUND,
      );
      // A name whose data is there without a record is refused, and the data kept.
      await expectCode(share('pvc-orphan-full'), Code.FAILED_PRECONDITION);
      expect(await fs.readFile(at('volumes/pvc-orphan-full/precious'), 'utf8')).to.equal('keep me');
      await fs.rm(at('volumes/pvc-orphan-full'), { recursive: true });
      await fs.rm(at('volumes/pvc-orphan-written.img'));
      // The names swept are free again.
      expect((await share('pvc-half-share')).volume.volume_id).to.equal('local:node-a:share:pvc-half-share');
    });

    it("does not answer for another node's volume when the pool changes node name", async () => {
      const { volume } = await block('pvc-moved', 64 << 20);
      await rpc(d.clients.controller, 'ControllerPublishVolume', {
        volume_id: volume.volume_id,
        node_id: 'node-a',
        volume_capability: mountCap(),
      });
      const moved = await DriverProcess.start({ mode: 'all', nodeId: 'node-b', poolDir: d.poolDir, extraArgs: ['--self-register=false'] });
      try {
        const err = await expectCode(
          rpc(moved.clients.controller, 'ControllerPublishVolume', {
            volume_id: volume.volume_id,
            node_id: 'node-b',
            volume_capability: mountCap(),
          }),
          Code.NOT_FOUND,
        );
        expect(err.details).to.contain('local pool of node node-a');
        await expectCode(rpc(moved.clients.controller, 'DeleteVolume', { volume_id: volume.volume_id }), Code.FAILED_PRECONDITION);
      } finally {
        await moved.cleanup();
      }
    });
  });
});
