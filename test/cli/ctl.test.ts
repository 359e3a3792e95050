// berth-ctl against a running driver: the newcomer's path without a cluster.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
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
    const created = JSON.parse(await ctl('create', 'demo', '--kind', 'block', '--size', '64Mi', '--fs', 'ext4')) as { volume: { volume_id: string } };
    const id = created.volume.volume_id;
    expect(await ctl('list')).to.contain(id);
    await ctl('attach', id);
    expect(await ctl('list')).to.match(new RegExp(`${id}.*node-a`));
    const mounted = (await ctl('mount', id, '--kubelet-dir', d.kubeletDir)).trim();
    expect(mounted.startsWith(path.join(d.kubeletDir, 'pods'))).to.equal(true);
    await fs.writeFile(path.join(mounted, 'hello'), 'from berth-ctl');
    const stats = JSON.parse(await ctl('stats', id, mounted)) as { usage: Array<{ unit: string }>; volume_condition: { abnormal: boolean } };
    expect(stats.usage.map((u) => u.unit)).to.deep.equal(['BYTES', 'INODES']);
    expect(stats.volume_condition.abnormal).to.equal(false);
    await ctl('unmount', id, '--kubelet-dir', d.kubeletDir);
    expect(await fs.stat(mounted).catch(() => null)).to.equal(null);
    expect(await loopTable()).to.deep.equal(loops);
    await ctl('detach', id);
    await ctl('delete', id);
    expect(await ctl('list')).to.not.contain(id);
  });

  it('exits 1 with the driver\'s message on an error', async () => {
    const err = await ctl('create', 'bad', '--param', 'colour=blue').catch((e: { code: number; stderr: string }) => e);
    expect(err).to.include({ code: 1 });
    expect((err as { stderr: string }).stderr).to.contain('unknown StorageClass parameter "colour"');
  });
});
