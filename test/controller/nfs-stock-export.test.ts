// The controller against an export configured as stock Linux servers ship
// them: `secure` (ganesha: PrivilegedPort, client source ports below 1024
// only) and `root_squash` (uid 0 is mapped to nobody). The export's
// directory belongs to uid 1000, as an admin's share would.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { Ganesha } from '../helpers/ganesha.js';
import { StandInApiServer } from '../helpers/stand-in-api-server.js';

const MiB = 1024 * 1024;
const OWNER = 1000;

describe('controller on a secure, root_squash NFS export (nfs-ganesha: PrivilegedPort, Squash = root_squash)', function () {
  this.timeout(120_000);
  let dir: string;
  let g: Ganesha;
  let d: DriverProcess;
  let unreserved: DriverProcess;
  const params = (extra: Record<string, string> = {}) => ({ pool: 'nfs', server: '127.0.0.1', share: g.exportPath, ...extra });
  const create = (driver: DriverProcess, name: string, parameters: Record<string, string>, kind: 'share' | 'block' = 'share') =>
    rpc<{ volume: { volume_id: string } }>(driver.clients.controller, 'CreateVolume', {
      name,
      capacity_range: { required_bytes: 16 * MiB },
      volume_capabilities: [kind === 'share' ? mountCap('MULTI_NODE_MULTI_WRITER') : mountCap('SINGLE_NODE_WRITER', 'ext4')],
      parameters: { kind, ...parameters },
    });

  let api: StandInApiServer;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-stock-nfs-'));
    g = new Ganesha(dir, `PrivilegedPort = true; Squash = root_squash; Anonymous_Uid = 65534; Anonymous_Gid = 65534;`);
    await fs.mkdir(g.exportDir, { recursive: true });
    await fs.chown(g.exportDir, OWNER, OWNER);
    await fs.chmod(g.exportDir, 0o755);
    await g.start();
    api = await StandInApiServer.start();
    const kubeconfig = ['--kubeconfig', api.kubeconfig];
    d = await DriverProcess.start({ mode: 'controller', extraArgs: kubeconfig }); // as root here: it may bind a reserved port (auto)
    unreserved = await DriverProcess.start({ mode: 'controller', extraArgs: [...kubeconfig, '--nfs-source-port', 'any'] });
  });
  after(async () => {
    await d?.cleanup();
    await unreserved?.cleanup();
    await api?.stop();
    await g?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('provisions share and block volumes as the export owner (nfsUid, nfsGid) from a reserved source port, and deletes them by id alone', async () => {
    const owner = { nfsUid: String(OWNER), nfsGid: String(OWNER) };
    const share = (await create(d, 'pvc-stock-share', params(owner))).volume.volume_id;
    const block = (await create(d, 'pvc-stock-block', params(owner), 'block')).volume.volume_id;
    expect(share).to.equal(`nfs:127.0.0.1@@@${OWNER}.${OWNER}:${g.exportPath}:share:pvc-stock-share`);
    for (const p of ['pvc-stock-share', 'pvc-stock-block/disk.img', '.berth/volumes/pvc-stock-block.json']) {
      expect((await fs.stat(path.join(g.exportDir, p))).uid, p).to.equal(OWNER);
    }
    await rpc(d.clients.controller, 'DeleteVolume', { volume_id: share });
    await rpc(d.clients.controller, 'DeleteVolume', { volume_id: block });
    expect((await fs.readdir(g.exportDir)).filter((e) => e !== '.berth')).to.deep.equal([]);
  });

  it('answers FAILED_PRECONDITION naming root_squash and nfsUid when root is squashed, leaving nothing behind', async () => {
    const before = await fs.readdir(g.exportDir, { recursive: true });
    const err = await expectCode(create(d, 'pvc-as-root', params()), Code.FAILED_PRECONDITION);
    expect(err.details)
      .to.match(/root_squash/)
      .and.match(/nfsUid and nfsGid/);
    expect(await fs.readdir(g.exportDir, { recursive: true })).to.deep.equal(before);
  });

  it('answers FAILED_PRECONDITION naming the secure export option when it connects from an unreserved port', async () => {
    const err = await expectCode(create(unreserved, 'pvc-unreserved', params({ nfsUid: String(OWNER) })), Code.FAILED_PRECONDITION);
    expect(err.details)
      .to.match(/secure/)
      .and.match(/reserved source ports/)
      .and.match(/insecure/);
  });
});
