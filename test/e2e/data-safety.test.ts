// Data safety, judged by effect (root, real loop devices, mkfs and mounts):
// each test is an attack on the local driver (a node's own controller and
// node in one process, with no attach step), and passes only if bytes,
// mounts, loop devices and files outside the pool come through unharmed.
// Races run many rounds; the seed is printed and BERTH_SEED replays it.
import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { blockCap, Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { FreshFilesystem } from '../helpers/fresh-fs.js';
import { exec, HostState, loopTable, mountTargets, sha256File } from '../helpers/host.js';
import { KubeletPaths, podUid } from '../helpers/kubelet.js';
import { outcome } from '../helpers/outcome.js';

const MiB = 1024 * 1024;
const ROUNDS = 16;

/** A small seeded generator (mulberry32): the same seed, the same interleavings. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('data safety: attacks on the local driver, judged by their effect (root, real devices)', function () {
  this.timeout(300_000);
  const seed = Number(process.env.BERTH_SEED ?? Date.now() % 1_000_000);
  const rand = random(seed);
  let d: DriverProcess;
  let k: KubeletPaths;
  let host: HostState;
  let pfs: FreshFilesystem;

  before(async () => {
    console.log(`      seed ${seed} (BERTH_SEED=${seed} replays these rounds)`);
    host = await HostState.capture();
    // A pool of its own (ext4, 512 MiB): the out-of-space attack fills it, never the machine's disk.
    pfs = await FreshFilesystem.make(undefined, { bytes: 512 * MiB, fsType: 'ext4' });
    d = await DriverProcess.start({ mode: 'local', nodeId: 'node-a', poolDir: path.join(pfs.mountpoint, 'pool') });
    k = new KubeletPaths(d.kubeletDir);
  });
  after(async () => {
    await d?.stop('SIGKILL');
    await d?.cleanup();
    await pfs?.remove();
    expect(await host.leaks(), 'loop devices or mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  const c = () => d.clients.controller;
  const n = () => d.clients.node;
  const fsCap = mountCap('SINGLE_NODE_WRITER', 'ext4');
  const create = async (name: string, kind: 'share' | 'block', parameters: Record<string, string> = {}) =>
    (
      await rpc<{ volume: { volume_id: string } }>(c(), 'CreateVolume', {
        name,
        capacity_range: { required_bytes: 64 * MiB },
        volume_capabilities: [kind === 'share' ? mountCap('MULTI_NODE_MULTI_WRITER') : fsCap],
        parameters: { kind, ...(kind === 'block' ? { provisioning: 'thin' } : {}), ...parameters },
      })
    ).volume.volume_id;
  const stage = async (id: string, staging: string, cap: object = fsCap) => {
    await k.prepareStage(staging);
    return rpc(n(), 'NodeStageVolume', { volume_id: id, staging_target_path: staging, volume_capability: cap });
  };
  const unstage = (id: string, staging: string) => rpc(n(), 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
  const publish = async (id: string, staging: string, target: string, cap: object = fsCap) => {
    await k.preparePublish(target);
    return rpc(n(), 'NodePublishVolume', { volume_id: id, staging_target_path: staging, target_path: target, volume_capability: cap });
  };
  const remove = (id: string) => rpc(c(), 'DeleteVolume', { volume_id: id });
  const image = (name: string) => path.join(d.poolDir, 'volumes', `${name}.img`);
  const loopsOn = async (file: string) => (await loopTable()).filter((l) => l.includes(file));

  describe('changing or deleting what is in use', () => {
    it('refuses to delete a share bound into a pod, and keeps its data', async () => {
      const id = await create('in-use-share', 'share');
      const staging = k.staging(id);
      const target = k.target(podUid(), 'in-use-share');
      await stage(id, staging, mountCap('MULTI_NODE_MULTI_WRITER'));
      await publish(id, staging, target, mountCap('MULTI_NODE_MULTI_WRITER'));
      await fs.writeFile(path.join(target, 'precious'), 'data');
      const err = await expectCode(remove(id), Code.FAILED_PRECONDITION);
      expect(err.details).to.match(/mounted at/);
      expect(await fs.readFile(path.join(d.poolDir, 'volumes', 'in-use-share', 'precious'), 'utf8')).to.equal('data');
      await rpc(n(), 'NodeUnpublishVolume', { volume_id: id, target_path: target });
      await expectCode(remove(id), Code.FAILED_PRECONDITION); // still staged
      await unstage(id, staging);
      await remove(id);
    });

    it(`never lets DeleteVolume and NodeStageVolume both succeed, nor leaves a mount of a deleted image (${ROUNDS} rounds)`, async () => {
      const outcomes = new Map<string, number>();
      for (let round = 0; round < ROUNDS; round++) {
        const name = `race-${round}`;
        const id = await create(name, 'block');
        const staging = k.staging(id);
        await k.prepareStage(staging);
        // Either call may go first, by up to 40 ms: every interleaving of the two is tried.
        const delay = Math.floor(rand() * 80) - 40;
        const later = (ms: number, call: () => Promise<unknown>) =>
          new Promise((r) => setTimeout(r, Math.max(0, ms))).then(() => outcome(call()));
        const [staged, deleted] = await Promise.all([
          later(-delay, () => rpc(n(), 'NodeStageVolume', { volume_id: id, staging_target_path: staging, volume_capability: fsCap })),
          later(delay, () => remove(id)),
        ]);
        outcomes.set(`${staged}/${deleted}`, (outcomes.get(`${staged}/${deleted}`) ?? 0) + 1);
        expect(staged === 'OK' && deleted === 'OK', `round ${round} (delay ${delay} ms): both answered OK`).to.equal(false);
        const mounted = (await mountTargets()).includes(staging);
        const loops = await loopsOn(image(name));
        if (deleted === 'OK') {
          expect(mounted, `round ${round}: mounted after its volume was deleted`).to.equal(false);
          expect(
            loops.filter((l) => l.includes('(deleted)')),
            `round ${round}: a loop device on a deleted image`,
          ).to.deep.equal([]);
        }
        if (staged === 'OK') {
          expect(await fs.stat(image(name)).then(() => true), `round ${round}: staged, and its image is gone`).to.equal(true);
          await unstage(id, staging);
        }
        if (deleted !== 'OK') await remove(id);
      }
      console.log(`      stage/delete outcomes: ${[...outcomes].map(([o, count]) => `${o} ×${count}`).join(', ')}`);
    });

    it('refuses to make a staged thick volume thin (its unwritten blocks are given back once unstaged), and loses no write', async () => {
      const id = await create('thick-to-thin', 'block', { provisioning: 'thick' });
      const staging = k.staging(id);
      await stage(id, staging);
      const written: string[] = [];
      let writing = true;
      const writer = (async () => {
        for (let i = 0; writing; i++) {
          await fs.writeFile(path.join(staging, `f${i}`), `write ${i} `.repeat(4096));
          written.push(`f${i}`);
          await exec('sync', ['-f', staging]);
        }
      })();
      const modify = () => rpc(c(), 'ControllerModifyVolume', { volume_id: id, mutable_parameters: { provisioning: 'thin' } });
      const err = await expectCode(modify(), Code.FAILED_PRECONDITION);
      expect(err.details).to.match(/only while unstaged/);
      writing = false;
      await writer;
      await unstage(id, staging);
      await modify();
      await stage(id, staging);
      for (const f of written) {
        const i = f.slice(1);
        expect(await fs.readFile(path.join(staging, f), 'utf8'), f).to.equal(`write ${i} `.repeat(4096));
      }
      await unstage(id, staging);
      await remove(id);
    });
  });

  describe('one volume inside another', () => {
    it('refuses a publish target or a staging path inside another volume’s staged filesystem, making nothing there', async () => {
      const outer = await create('outer', 'block');
      const inner = await create('inner', 'share');
      const outerStaging = k.staging(outer);
      await stage(outer, outerStaging);
      const shareCap = mountCap('MULTI_NODE_MULTI_WRITER');
      const inside = path.join(outerStaging, 'pods', 'x', 'mount');
      await expectCode(
        rpc(n(), 'NodeStageVolume', { volume_id: inner, staging_target_path: inside, volume_capability: shareCap }),
        Code.INVALID_ARGUMENT,
      );
      const innerStaging = k.staging(inner);
      await stage(inner, innerStaging, shareCap);
      await expectCode(
        rpc(n(), 'NodePublishVolume', {
          volume_id: inner,
          staging_target_path: innerStaging,
          target_path: inside,
          volume_capability: shareCap,
        }),
        Code.INVALID_ARGUMENT,
      );
      expect(await fs.readdir(outerStaging), 'nothing made inside the outer volume').to.deep.equal(['lost+found']);
      expect((await mountTargets()).filter((t) => t.startsWith(`${outerStaging}/`))).to.deep.equal([]);
      await unstage(inner, innerStaging);
      await unstage(outer, outerStaging);
      await remove(inner);
      await remove(outer);
    });

    it(`never stacks two volumes staged at one path at once (${ROUNDS} rounds)`, async () => {
      const a = await create('stack-a', 'block');
      const b = await create('stack-b', 'block');
      const staging = path.join(d.kubeletDir, 'plugins/kubernetes.io/csi/berth.csi.dev/shared/globalmount');
      for (let round = 0; round < ROUNDS; round++) {
        await k.prepareStage(staging);
        const delay = Math.floor(rand() * 10);
        const [ra, rb] = await Promise.all([
          outcome(rpc(n(), 'NodeStageVolume', { volume_id: a, staging_target_path: staging, volume_capability: fsCap })),
          new Promise((r) => setTimeout(r, delay)).then(() =>
            outcome(rpc(n(), 'NodeStageVolume', { volume_id: b, staging_target_path: staging, volume_capability: fsCap })),
          ),
        ]);
        const stacked = (await mountTargets()).filter((t) => t === staging).length;
        expect(stacked, `round ${round} (delay ${delay} ms): ${ra}/${rb}`).to.be.at.most(1);
        expect(ra === 'OK' && rb === 'OK', `round ${round}: both answered OK`).to.equal(false);
        if (ra === 'OK') await unstage(a, staging);
        if (rb === 'OK') await unstage(b, staging);
      }
      await remove(a);
      await remove(b);
    });
  });

  describe('symbolic links and odd files in the pool', () => {
    it('never attaches, formats or mounts an image that is a symbolic link out of the pool', async () => {
      const id = await create('linked', 'block');
      const outside = path.join(d.dir, 'outside.img');
      await exec('truncate', ['-s', `${64 * MiB}`, outside]); // blank: what a format would take
      const before = await sha256File(outside);
      await fs.rm(image('linked'));
      await fs.symlink(outside, image('linked'));
      const staging = k.staging(id);
      for (const cap of [fsCap, blockCap()]) {
        const at = 'block' in cap ? k.blockStaging('linked') : staging;
        const err = await expectCode(stage(id, at, cap), Code.FAILED_PRECONDITION);
        expect(err.details).to.match(/symbolic link/);
      }
      expect(await sha256File(outside), 'the file outside the pool').to.equal(before);
      expect(await loopsOn(outside)).to.deep.equal([]);
      expect((await mountTargets()).filter((t) => t.startsWith(d.kubeletDir))).to.deep.equal([]);
      await unstage(id, staging); // nothing to undo, and nothing refused
      await fs.rm(image('linked'));
      await exec('truncate', ['-s', `${64 * MiB}`, image('linked')]);
      await remove(id);
    });

    it('never attaches an image smaller than its volume (a 0-byte file a failed create left)', async () => {
      const id = await create('empty-image', 'block');
      await fs.truncate(image('empty-image'), 0);
      const err = await expectCode(stage(id, k.staging(id)), Code.FAILED_PRECONDITION);
      expect(err.details).to.match(/smaller than its volume/);
      expect(await loopsOn(image('empty-image'))).to.deep.equal([]);
      await remove(id);
    });
  });

  describe('modes', () => {
    it('gives everything it makes the narrowest mode: no file or directory writable by others, images and records 0600', async () => {
      const id = await create('modes', 'block');
      await rpc(c(), 'CreateSnapshot', { name: 'modes-snap', source_volume_id: id, parameters: {} });
      await rpc(c(), 'CreateVolume', {
        name: 'modes-clone',
        capacity_range: { required_bytes: 64 * MiB },
        volume_capabilities: [fsCap],
        parameters: { kind: 'block' },
        volume_content_source: { volume: { volume_id: id } },
      });
      const wide: string[] = [];
      const walk = async (dir: string) => {
        for (const e of await fs.readdir(dir, { withFileTypes: true })) {
          const p = path.join(dir, e.name);
          const st = await fs.lstat(p);
          const mode = st.mode & 0o777;
          const shareRoot = e.isDirectory() && path.basename(dir) === 'volumes';
          if (mode & 0o022 && !shareRoot) wide.push(`${p} ${mode.toString(8)}`);
          if (e.isFile() && /\.(img|json)$/.test(e.name) && mode !== 0o600) wide.push(`${p} ${mode.toString(8)}, not 600`);
          // A share's own directory follows its class's mountPermissions, and what is inside is the user's.
          if (e.isDirectory() && path.basename(dir) !== 'volumes') await walk(p);
        }
      };
      await walk(d.poolDir);
      const socketDir = path.dirname(d.socket);
      expect(((await fs.stat(socketDir)).mode & 0o777).toString(8), 'the socket directory').to.equal('700');
      expect(((await fs.stat(d.socket)).mode & 0o777).toString(8), 'the socket').to.equal('600');
      expect(wide).to.deep.equal([]);
    });
  });

  describe('answers', () => {
    it('reports no usage for a path where nothing is mounted (never its parent filesystem’s)', async () => {
      const id = await create('unstaged-stats', 'share');
      const staging = k.staging(id);
      await k.prepareStage(staging);
      const stats = await rpc<{ usage: unknown[]; volume_condition: { abnormal: boolean; message: string } }>(n(), 'NodeGetVolumeStats', {
        volume_id: id,
        volume_path: staging,
      });
      expect(stats.usage).to.deep.equal([]);
      expect(stats.volume_condition.abnormal).to.equal(true);
      await remove(id);
    });

    it('answers RESOURCE_EXHAUSTED when a snapshot or a clone does not fit the pool', async () => {
      // A thin volume larger than the room left, filled: its copy cannot fit.
      const free = Number(
        (await rpc<{ available_capacity: string }>(c(), 'GetCapacity', { parameters: { kind: 'block' } })).available_capacity,
      );
      const bytes = Math.floor((free * 0.6) / MiB) * MiB;
      const { volume } = await rpc<{ volume: { volume_id: string } }>(c(), 'CreateVolume', {
        name: 'fills',
        capacity_range: { required_bytes: bytes },
        volume_capabilities: [fsCap],
        parameters: { kind: 'block', provisioning: 'thin' },
      });
      await exec('dd', ['if=/dev/urandom', `of=${image('fills')}`, 'bs=1M', `count=${bytes / MiB}`, 'conv=notrunc,fsync', 'status=none']);
      await expectCode(
        rpc(c(), 'CreateSnapshot', { name: 'too-big', source_volume_id: volume.volume_id, parameters: {} }),
        Code.RESOURCE_EXHAUSTED,
      );
      await expectCode(
        rpc(c(), 'CreateVolume', {
          name: 'too-big-clone',
          capacity_range: { required_bytes: bytes },
          volume_capabilities: [fsCap],
          parameters: { kind: 'block', provisioning: 'thin' },
          volume_content_source: { volume: { volume_id: volume.volume_id } },
        }),
        Code.RESOURCE_EXHAUSTED,
      );
      expect((await fs.readdir(path.join(d.poolDir, '.tmp'))).length, 'no partial copy left').to.equal(0);
      await remove(volume.volume_id);
    });
  });
});
