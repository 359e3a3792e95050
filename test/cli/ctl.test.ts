// berth-ctl against a running driver: the newcomer's path without a cluster.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { parseQuantity as parseSize } from '../../volume/quantity.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { loopTable } from '../helpers/host.js';

const exec = promisify(execFile);
const CTL = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../cli/ctl.js');

describe('berth-ctl', function () {
  this.timeout(60_000);
  let d: DriverProcess;
  const ctl = async (...args: string[]) => (await exec(process.execPath, [CTL, '--endpoint', `unix://${d.socket}`, ...args])).stdout;

  before(async () => {
    d = await DriverProcess.start({ mode: 'all' });
  });
  after(async () => d.cleanup());

  it('parses Kubernetes-style sizes', () => {
    expect(parseSize('1Gi')).to.equal(2 ** 30);
    expect(parseSize('500M')).to.equal(5e8);
    expect(() => parseSize('lots')).to.throw(/not like/);
  });

  it('creates, lists, attaches, mounts, writes, reads stats, unmounts, detaches and deletes a block volume', async () => {
    const loops = await loopTable();
    const created = JSON.parse(await ctl('create', 'demo', '--kind', 'block', '--size', '64Mi', '--fs', 'ext4')) as {
      volume: { volume_id: string };
    };
    const id = created.volume.volume_id;
    expect(await ctl('list')).to.contain(id);
    await ctl('attach', id);
    expect(await ctl('list')).to.match(new RegExp(`${id}.*node-a`));
    const mounted = (await ctl('mount', id, '--kubelet-dir', d.kubeletDir)).trim();
    expect(mounted.startsWith(path.join(d.kubeletDir, 'pods'))).to.equal(true);
    await fs.writeFile(path.join(mounted, 'hello'), 'from berth-ctl');
    const stats = JSON.parse(await ctl('stats', id, mounted)) as {
      usage: Array<{ unit: string }>;
      volume_condition: { abnormal: boolean };
    };
    expect(stats.usage.map((u) => u.unit)).to.deep.equal(['BYTES', 'INODES']);
    expect(stats.volume_condition.abnormal).to.equal(false);
    await ctl('unmount', id, '--kubelet-dir', d.kubeletDir);
    expect(await fs.stat(mounted).catch(() => null)).to.equal(null);
    expect(await loopTable()).to.deep.equal(loops);
    await ctl('detach', id);
    await ctl('delete', id);
    expect(await ctl('list')).to.not.contain(id);
  });

  it('snapshots a volume, lists the snapshot, restores and clones from it, and deletes it', async () => {
    const id = (JSON.parse(await ctl('create', 'snap-src', '--kind', 'block', '--size', '64Mi')) as { volume: { volume_id: string } })
      .volume.volume_id;
    const snap = JSON.parse(await ctl('snapshot', id, 'snap-1')) as { snapshot: { snapshot_id: string; ready_to_use: boolean } };
    expect(snap.snapshot.ready_to_use).to.equal(true);
    expect(await ctl('snapshots', '--volume', id)).to.match(new RegExp(`${snap.snapshot.snapshot_id}\\s+67108864\\s+yes\\s+${id}`));
    const restored = JSON.parse(await ctl('create', 'snap-restored', '--kind', 'block', '--from-snapshot', snap.snapshot.snapshot_id)) as {
      volume: { volume_id: string; capacity_bytes: string };
    };
    expect(restored.volume.capacity_bytes).to.equal(String(64 * 2 ** 20)); // the snapshot's size, none asked
    const clone = JSON.parse(await ctl('create', 'snap-clone', '--kind', 'block', '--from-volume', id)) as {
      volume: { volume_id: string };
    };
    await ctl('delete-snapshot', snap.snapshot.snapshot_id);
    expect(await ctl('snapshots')).to.not.contain(snap.snapshot.snapshot_id);
    for (const v of [restored.volume.volume_id, clone.volume.volume_id, id]) await ctl('delete', v);
  });

  it("exits 1 with the driver's message on an error", async () => {
    const err = await ctl('create', 'bad', '--param', 'colour=blue').catch((e: { code: number; stderr: string }) => e);
    expect(err).to.include({ code: 1 });
    expect((err as { stderr: string }).stderr).to.contain('unknown StorageClass parameter "colour"');
  });

  it('prints its usage and exits 0 for --help', async () => {
    const { stdout } = await exec(process.execPath, [CTL, '--help']);
    expect(stdout).to.contain('Usage: berth-ctl');
  });

  it('exits 2 with the usage for an unknown command, a missing command or an option the command does not take', async () => {
    for (const args of [['frobnicate'], [], ['list', '--bogus', 'x'], ['create']]) {
      const err = (await exec(process.execPath, [CTL, '--endpoint', `unix://${d.socket}`, ...args]).catch((e: unknown) => e)) as {
        code: number;
        stderr: string;
      };
      expect(err.code, args.join(' ')).to.equal(2);
      expect(err.stderr).to.contain('Usage: berth-ctl');
    }
  });

  it('says so in words when no driver answers on the endpoint', async () => {
    const err = (await exec(process.execPath, [CTL, '--endpoint', 'unix:///tmp/berth-no-such-driver.sock', 'list']).catch(
      (e: unknown) => e,
    )) as { code: number; stderr: string };
    expect(err.code).to.equal(1);
    expect(err.stderr.trim()).to.equal(
      'berth-ctl: no driver answers on unix:///tmp/berth-no-such-driver.sock: start one (npm start) or pass --endpoint',
    );
  });
});
