// The controller's decisions as tables (fast tier): a real local pool in a
// temporary directory and the controller called directly, no root and no
// gRPC. Each row is a request and the answer the spec asks for; the root
// tier (controller.test.ts) runs the same calls through a driver process.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ControllerService } from '../../controller/controller-service.js';
import { GroupSnapshotService } from '../../controller/group-snapshots.js';
import { LocalPool } from '../../controller/local-pool.js';
import { NfsPools } from '../../controller/nfs-pools.js';
import { type NodeDirectory, SelfNode } from '../../controller/nodes.js';
import { Code, type CsiError } from '../../volume/errors.js';
import { TOPOLOGY_KEY } from '../../volume/topology.js';
import { formatVolumeId } from '../../volume/volume-id.js';
import { outcome } from '../helpers/outcome.js';

const mib = (n: number) => n * 1024 * 1024;
const mount = (mode = 'SINGLE_NODE_WRITER', fsType = '') => ({
  access_type: 'mount',
  mount: { fs_type: fsType, mount_flags: [] },
  access_mode: { mode },
});
const raw = (mode = 'SINGLE_NODE_WRITER') => ({ access_type: 'block', block: {}, access_mode: { mode } });

describe('controller decisions (fast tier: a local pool in a temporary directory)', () => {
  let dir: string;
  let pool: LocalPool;
  let controller: ControllerService;
  /** Requests are written as a CO sends them, fields left out. */
  const call = (method: keyof ControllerService, req: object) =>
    (controller[method] as (r: object) => Promise<unknown>).call(controller, req);
  const share = (name: string, extra: object = {}) =>
    call('CreateVolume', { name, volume_capabilities: [mount('MULTI_NODE_MULTI_WRITER')], parameters: {}, ...extra });
  const block = (name: string, bytes: number, extra: object = {}) =>
    call('CreateVolume', {
      name,
      volume_capabilities: [mount()],
      capacity_range: { required_bytes: bytes },
      parameters: { kind: 'block', provisioning: 'thin' },
      ...extra,
    });

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-decisions-'));
    pool = new LocalPool(dir, 1);
    await pool.init();
    controller = new ControllerService({
      kind: 'all-in-one',
      nodeId: 'node-a',
      local: pool,
      nfs: new NfsPools(),
      nodes: new SelfNode('node-a', 2),
    });
    await share('existing-share', { capacity_range: { required_bytes: mib(10) } });
    await block('existing-block', mib(64));
  });
  after(async () => fs.rm(dir, { recursive: true, force: true }));

  describe('CreateVolume', () => {
    const rows: Array<[string, () => Promise<unknown>, string]> = [
      ['a new share', () => share('new-share'), 'OK'],
      ['the same share again', () => share('existing-share', { capacity_range: { required_bytes: mib(10) } }), 'OK'],
      [
        'the same block volume again, within a range that holds it',
        () => block('existing-block', mib(32), { capacity_range: { required_bytes: mib(32), limit_bytes: mib(128) } }),
        'OK',
      ],
      ['the name again, larger', () => block('existing-block', mib(128)), 'ALREADY_EXISTS'],
      ['the name again, as another kind', () => share('existing-block'), 'ALREADY_EXISTS'],
      [
        'the name again, with other parameters',
        () => block('existing-block', mib(64), { parameters: { kind: 'block', provisioning: 'thin', onDelete: 'retain' } }),
        'ALREADY_EXISTS',
      ],
      [
        'the name again, with another filesystem',
        () => block('existing-block', mib(512), { volume_capabilities: [mount('SINGLE_NODE_WRITER', 'xfs')] }),
        'ALREADY_EXISTS',
      ],
      ['no name', () => call('CreateVolume', { volume_capabilities: [mount()] }), 'INVALID_ARGUMENT'],
      ['a name of 129 bytes', () => share('x'.repeat(129)), 'INVALID_ARGUMENT'],
      ['a name with a control character', () => share('bad\u0001name'), 'INVALID_ARGUMENT'],
      ['no capabilities', () => call('CreateVolume', { name: 'no-caps', parameters: {} }), 'INVALID_ARGUMENT'],
      ['an unknown parameter', () => share('colour', { parameters: { colour: 'blue' } }), 'INVALID_ARGUMENT'],
      ['an unknown kind', () => share('tape', { parameters: { kind: 'tape' } }), 'INVALID_ARGUMENT'],
      ['a share as a raw block device', () => share('raw-share', { volume_capabilities: [raw()] }), 'INVALID_ARGUMENT'],
      [
        'a block volume written from many nodes',
        () => block('rwx-block', mib(64), { volume_capabilities: [raw('MULTI_NODE_MULTI_WRITER')] }),
        'INVALID_ARGUMENT',
      ],
      [
        'a filesystem berth does not make',
        () => block('zfs', mib(64), { volume_capabilities: [mount('SINGLE_NODE_WRITER', 'zfs')] }),
        'INVALID_ARGUMENT',
      ],
      ['required above limit', () => share('range', { capacity_range: { required_bytes: 10, limit_bytes: 5 } }), 'INVALID_ARGUMENT'],
      [
        'provisioning changed by a mutable parameter on a share',
        () => share('mutable', { mutable_parameters: { provisioning: 'thick' } }),
        'INVALID_ARGUMENT',
      ],
      [
        'an NFS class on a controller of every pool, with no server',
        () => share('nfs', { parameters: { pool: 'nfs' } }),
        'INVALID_ARGUMENT',
      ],
      ['a block volume smaller than ext4 needs', () => block('tiny', 4096), 'OUT_OF_RANGE'],
      [
        'an xfs volume smaller than xfs needs',
        () => block('tiny-xfs', mib(100), { volume_capabilities: [mount('SINGLE_NODE_WRITER', 'xfs')] }),
        'OUT_OF_RANGE',
      ],
      [
        'a size that is not whole sectors, with no room to round',
        () => block('odd', 0, { capacity_range: { required_bytes: mib(64) + 1, limit_bytes: mib(64) + 1 } }),
        'OUT_OF_RANGE',
      ],
      ['more than the pool may promise', () => block('petabyte', 2 ** 50), 'RESOURCE_EXHAUSTED'],
      [
        'a topology without this node',
        () => share('elsewhere', { accessibility_requirements: { requisite: [{ segments: { [TOPOLOGY_KEY]: 'node-b' } }] } }),
        'RESOURCE_EXHAUSTED',
      ],
      [
        'a copy of a snapshot that does not exist',
        () => share('from-nothing', { volume_content_source: { type: 'snapshot', snapshot: { snapshot_id: 'local:node-a:share:nope' } } }),
        'NOT_FOUND',
      ],
      [
        'a copy of a volume held by another node',
        () => share('from-b', { volume_content_source: { type: 'volume', volume: { volume_id: 'local:node-b:share:x' } } }),
        'RESOURCE_EXHAUSTED',
      ],
      [
        'a copy of a volume of another kind',
        () =>
          block('clone', mib(64), {
            volume_content_source: { type: 'volume', volume: { volume_id: 'local:node-a:share:existing-share' } },
          }),
        'INVALID_ARGUMENT',
      ],
    ];
    for (const [what, request, expected] of rows) {
      it(`${what}: ${expected}`, async () => expect(await outcome(request())).to.equal(expected));
    }

    it('answers a copy retried after its source was deleted with the volume it made', async () => {
      await share('source');
      const source = { type: 'volume', volume: { volume_id: 'local:node-a:share:source' } };
      await share('copy', { volume_content_source: source });
      await call('DeleteVolume', { volume_id: 'local:node-a:share:source' });
      expect(await outcome(share('copy', { volume_content_source: source }))).to.equal('OK');
      expect(
        await outcome(share('copy', { volume_content_source: { ...source, volume: { volume_id: 'local:node-a:share:other' } } })),
      ).to.equal('NOT_FOUND');
    });
  });

  describe('ControllerPublishVolume and DeleteVolume', () => {
    const id = 'local:node-a:block:existing-block';
    const rows: Array<[string, () => Promise<unknown>, string]> = [
      [
        'a publish to this node',
        () => call('ControllerPublishVolume', { volume_id: id, node_id: 'node-a', volume_capability: mount() }),
        'OK',
      ],
      [
        'the same publish again',
        () => call('ControllerPublishVolume', { volume_id: id, node_id: 'node-a', volume_capability: mount() }),
        'OK',
      ],
      [
        'the same node read-only',
        () => call('ControllerPublishVolume', { volume_id: id, node_id: 'node-a', volume_capability: mount(), readonly: true }),
        'ALREADY_EXISTS',
      ],
      [
        'a node that does not exist',
        () => call('ControllerPublishVolume', { volume_id: id, node_id: 'node-z', volume_capability: mount() }),
        'NOT_FOUND',
      ],
      [
        'a volume that does not exist',
        () => call('ControllerPublishVolume', { volume_id: 'local:node-a:block:nope', node_id: 'node-a', volume_capability: mount() }),
        'NOT_FOUND',
      ],
      ['no capability', () => call('ControllerPublishVolume', { volume_id: id, node_id: 'node-a' }), 'INVALID_ARGUMENT'],
      ['no node', () => call('ControllerPublishVolume', { volume_id: id, volume_capability: mount() }), 'INVALID_ARGUMENT'],
      ['a delete while published', () => call('DeleteVolume', { volume_id: id }), 'FAILED_PRECONDITION'],
      ['a delete of a volume of another node', () => call('DeleteVolume', { volume_id: 'local:node-b:share:x' }), 'FAILED_PRECONDITION'],
      ['a delete of a volume that is gone', () => call('DeleteVolume', { volume_id: 'local:node-a:share:gone' }), 'OK'],
      ['an unpublish', () => call('ControllerUnpublishVolume', { volume_id: id, node_id: 'node-a' }), 'OK'],
      ['the unpublish again', () => call('ControllerUnpublishVolume', { volume_id: id, node_id: 'node-a' }), 'OK'],
      [
        'an unpublish of a volume that is gone',
        () => call('ControllerUnpublishVolume', { volume_id: 'local:node-a:block:gone', node_id: 'node-a' }),
        'OK',
      ],
    ];
    for (const [what, request, expected] of rows) {
      it(`${what}: ${expected}`, async () => expect(await outcome(request())).to.equal(expected));
    }

    it('refuses a publish past the node’s max_volumes_per_node with RESOURCE_EXHAUSTED', async () => {
      for (const name of ['limit-1', 'limit-2', 'limit-3']) await share(name);
      const publish = (name: string) =>
        call('ControllerPublishVolume', {
          volume_id: `local:node-a:share:${name}`,
          node_id: 'node-a',
          volume_capability: mount('MULTI_NODE_MULTI_WRITER'),
        });
      expect([await outcome(publish('limit-1')), await outcome(publish('limit-2')), await outcome(publish('limit-3'))]).to.deep.equal([
        'OK',
        'OK',
        'RESOURCE_EXHAUSTED',
      ]);
      for (const name of ['limit-1', 'limit-2'])
        await call('ControllerUnpublishVolume', { volume_id: `local:node-a:share:${name}`, node_id: 'node-a' });
    });
  });

  describe('ValidateVolumeCapabilities', () => {
    type Answer = { confirmed?: object; message?: string };
    const validate = (volume_id: string, volume_capabilities: object[], extra: object = {}) =>
      call('ValidateVolumeCapabilities', { volume_id, volume_capabilities, ...extra }) as Promise<Answer>;
    const rows: Array<[string, () => Promise<Answer>, 'confirmed' | RegExp]> = [
      [
        'a block volume as a device and as ext4',
        () => validate('local:node-a:block:existing-block', [raw(), mount('SINGLE_NODE_WRITER', 'ext4')]),
        'confirmed',
      ],
      [
        'a block volume from many nodes',
        () => validate('local:node-a:block:existing-block', [mount('MULTI_NODE_MULTI_WRITER')]),
        /single-node/,
      ],
      ['a share from many nodes', () => validate('local:node-a:share:existing-share', [mount('MULTI_NODE_MULTI_WRITER')]), 'confirmed'],
      ['a share as a device', () => validate('local:node-a:share:existing-share', [raw()]), /share/],
      [
        'other parameters',
        () => validate('local:node-a:share:existing-share', [mount()], { parameters: { onDelete: 'retain' } }),
        /onDelete/,
      ],
      [
        'another volume context',
        () => validate('local:node-a:share:existing-share', [mount()], { volume_context: { node: 'node-b' } }),
        /node/,
      ],
    ];
    for (const [what, request, expected] of rows) {
      it(`${what}: ${expected === 'confirmed' ? 'confirmed' : `not confirmed, saying ${expected}`}`, async () => {
        const answer = await request();
        if (expected === 'confirmed') expect(answer.confirmed, answer.message).to.be.an('object');
        else {
          expect(answer.confirmed).to.equal(undefined);
          expect(answer.message).to.match(expected);
        }
      });
    }
    it('answers NOT_FOUND for an unknown volume and INVALID_ARGUMENT without capabilities', async () => {
      expect(await outcome(validate('local:node-a:share:nope', [mount()]))).to.equal('NOT_FOUND');
      expect(await outcome(validate('local:node-a:share:existing-share', []))).to.equal('INVALID_ARGUMENT');
    });
  });

  describe('by role', () => {
    const nodes: NodeDirectory = { exists: async (n) => n === 'node-a', maxVolumes: async () => 0 };
    const capabilities = async (c: ControllerService) =>
      ((await c.ControllerGetCapabilities()).capabilities as Array<{ rpc: { type: string } }>).map((x) => x.rpc.type);

    it('a node’s local driver: no attach and no controller expansion; NFS classes refused', async () => {
      const local = new ControllerService({ kind: 'local-driver', nodeId: 'node-a', local: pool });
      const offered = await capabilities(local);
      expect(offered).to.include('CREATE_DELETE_VOLUME');
      expect(offered).not.to.include.members(['PUBLISH_UNPUBLISH_VOLUME']);
      expect(offered).not.to.include('EXPAND_VOLUME');
      const id = 'local:node-a:block:existing-block';
      expect(
        await outcome(local.ControllerPublishVolume({ volume_id: id, node_id: 'node-a', volume_capability: mount() } as never)),
      ).to.equal('UNIMPLEMENTED');
      expect(await outcome(local.ControllerExpandVolume({ volume_id: id, capacity_range: { required_bytes: mib(65) } } as never))).to.equal(
        'UNIMPLEMENTED',
      );
      const nfs = { pool: 'nfs', server: '192.0.2.1', share: '/export' };
      expect(await outcome(local.CreateVolume({ name: 'n', volume_capabilities: [mount()], parameters: nfs } as never))).to.equal(
        'INVALID_ARGUMENT',
      );
    });

    it('the central NFS controller: attach and expansion; local classes refused, and no capacity without an export named', async () => {
      const central = new ControllerService({ kind: 'nfs-controller', nodeId: 'controller', nfs: new NfsPools(), nodes });
      expect(await capabilities(central)).to.include.members(['PUBLISH_UNPUBLISH_VOLUME', 'EXPAND_VOLUME']);
      expect(await outcome(central.CreateVolume({ name: 'l', volume_capabilities: [mount()], parameters: {} } as never))).to.equal(
        'INVALID_ARGUMENT',
      );
      expect(await central.GetCapacity({ parameters: {} } as never)).to.deep.equal({ available_capacity: 0 });
      expect(
        await outcome(central.DeleteVolume({ volume_id: 'local:node-a:share:x' } as never)),
        'a local volume is not its to forget',
      ).to.equal('FAILED_PRECONDITION');
    });
  });

  describe('answers that stay bounded, and answers that tell the truth (data safety)', () => {
    it('refuses a class whose mountOptions would make a volume_context over the spec’s 4 KiB', async () => {
      const mountOptions = Array.from({ length: 700 }, (_, i) => `opt${i}`).join(',');
      const nfs = { pool: 'nfs', server: '127.0.0.1', share: '/export', mountOptions };
      const err = await share('big-context', { parameters: nfs }).then(
        () => undefined,
        (e: CsiError) => e,
      );
      expect(err?.code).to.equal(Code.INVALID_ARGUMENT);
      expect(err?.message).to.match(/4 KiB/);
    });

    it('cuts every message to 1 KiB, however large the value it echoes', async () => {
      const err = await share('huge', { parameters: { kind: 'x'.repeat(1 << 20) } }).then(
        () => undefined,
        (e: CsiError) => e,
      );
      expect(err?.code).to.equal(Code.INVALID_ARGUMENT);
      expect(Buffer.byteLength(err?.message ?? '')).to.be.at.most(1024);
      expect(err?.message).to.match(/bytes, cut\)$/);
    });

    it('lists each volume with its condition (external-health-monitor reads ListVolumes)', async () => {
      await share('gone-dir');
      await fs.rmdir(path.join(dir, 'volumes', 'gone-dir'));
      type Entry = { volume: { volume_id: string }; status: { volume_condition: { abnormal: boolean; message: string } } };
      const { entries } = (await call('ListVolumes', { max_entries: 0, starting_token: '' })) as { entries: Entry[] };
      const gone = entries.find((e) => e.volume.volume_id === 'local:node-a:share:gone-dir');
      expect(gone?.status.volume_condition.abnormal).to.equal(true);
      expect(entries.find((e) => e.volume.volume_id === 'local:node-a:share:existing-share')?.status.volume_condition.abnormal).to.equal(
        false,
      );
      await call('DeleteVolume', { volume_id: 'local:node-a:share:gone-dir' });
    });

    it('publishes a static NFS share without reaching its server (a migrated PV attaches while the server is slow)', async () => {
      const nodes: NodeDirectory = { exists: async () => true, maxVolumes: async () => 0 };
      const central = new ControllerService({ kind: 'nfs-controller', nodeId: 'controller', nfs: new NfsPools(), nodes });
      // Port 9 on loopback: nothing listens, so any NFS call would fail.
      const ref = {
        pool: 'nfs',
        server: '127.0.0.1',
        share: '/export',
        nfsPort: 9,
        mountPort: 9,
        kind: 'share',
        dirName: 'migrated',
      } as const;
      const volume_context = { pool: 'nfs', kind: 'share', static: 'true', server: '127.0.0.1', share: '/export', subDir: '' };
      const answer = await central.ControllerPublishVolume({
        volume_id: formatVolumeId(ref),
        node_id: 'node-a',
        volume_capability: mount('MULTI_NODE_MULTI_WRITER'),
        volume_context,
      } as never);
      expect(answer).to.deep.equal({ publish_context: { kind: 'share' } });
    });

    it('never answers a group snapshot with members missing: a name begun of other volumes, or a member key taken, is ALREADY_EXISTS', async () => {
      const groups = new GroupSnapshotService(controller.pools);
      for (const n of ['g-a', 'g-b', 'g-c']) await share(n);
      const id = (n: string) => `local:node-a:share:${n}`;
      const group = (name: string, ...vols: string[]) => groups.CreateVolumeGroupSnapshot({ name, source_volume_ids: vols.map(id) });
      const made = await group('g1', 'g-a', 'g-b');
      expect(made.group_snapshot.snapshots).to.have.length(2);
      expect(await outcome(group('g1', 'g-a'))).to.equal('ALREADY_EXISTS');
      // A member lost (an interrupted create): the same set is taken again whole, another set is refused.
      const member = (await fs.readdir(path.join(dir, 'snapshots'))).find((f) => f.endsWith('.json')) as string;
      await fs.rm(path.join(dir, 'snapshots', member));
      expect(await outcome(group('g1', 'g-a', 'g-c'))).to.equal('ALREADY_EXISTS');
      expect((await group('g1', 'g-a', 'g-b')).group_snapshot.snapshots).to.have.length(2);
      // A plain snapshot holding a member's key.
      await call('CreateSnapshot', { name: `g2/${id('g-a')}`, source_volume_id: id('g-a'), parameters: {} });
      expect(await outcome(group('g2', 'g-a', 'g-b'))).to.equal('ALREADY_EXISTS');
    });
  });
});
