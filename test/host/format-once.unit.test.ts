// Format once and remember (host/format-once.ts), shared by the CSI node and
// the FlexVolume block driver, through the fake host.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ForeignContentError, formatOnceAndMount, readFilesystemRecord } from '../../host/index.js';
import { FakeHost } from '../helpers/fake-host.js';

describe('format once and remember', () => {
  let dir: string;
  let host: FakeHost;
  let image: string;
  let recordPath: string;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-format-once-'));
    host = new FakeHost();
    image = path.join(dir, 'disk.img');
    await fs.writeFile(image, '');
    recordPath = path.join(dir, 'records', 'disk.json');
    await fs.mkdir(path.join(dir, 'mnt'));
  });
  afterEach(async () => fs.rm(dir, { recursive: true, force: true }));

  const mountIt = async (opts: { readonly?: boolean } = {}) => {
    const device = await host.attachLoop(image);
    return formatOnceAndMount(host, device, path.join(dir, 'mnt'), 'ext4', [], { recordPath, image, volumeId: 'v-1', ...opts });
  };

  it('formats a blank volume once, recording it (directory 0700), and mounts it without formatting after', async () => {
    expect(await mountIt()).to.deep.equal({ formatted: true });
    expect(await readFilesystemRecord(recordPath)).to.include({ fsType: 'ext4', madeByBerth: true, volumeId: 'v-1' });
    expect((await fs.stat(path.dirname(recordPath))).mode & 0o777).to.equal(0o700);
    await host.unmount(path.join(dir, 'mnt'));
    expect(await mountIt()).to.deep.equal({ formatted: false });
    expect(host.calls.filter((c) => c.startsWith('mkfs'))).to.have.length(1);
  });

  it('refuses, with its reason, a recorded filesystem whose signature is gone, formatting nothing', async () => {
    await mountIt();
    await host.unmount(path.join(dir, 'mnt'));
    host.image(path.resolve(image)).content = { state: 'blank' };
    const err = await mountIt().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ForeignContentError);
    expect((err as ForeignContentError).reason).to.equal('recorded-filesystem-gone');
    expect(host.calls.filter((c) => c.startsWith('mkfs'))).to.have.length(1);
  });

  it('takes an unreadable record for an error, never for "blank"', async () => {
    await fs.mkdir(path.dirname(recordPath), { recursive: true });
    await fs.writeFile(recordPath, '{"fsType":');
    const err = await mountIt().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(Error);
    expect(host.calls.filter((c) => c.startsWith('mkfs'))).to.deep.equal([]);
  });

  it('never formats on a read-only mount', async () => {
    const err = await mountIt({ readonly: true }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as ForeignContentError).reason).to.equal('blank-read-only');
    expect(host.calls.filter((c) => c.startsWith('mkfs'))).to.deep.equal([]);
  });
});
