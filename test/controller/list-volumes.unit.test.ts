// ListVolumes pagination and its tokens (fast tier: a local pool in a
// temporary directory needs no root).

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ControllerService } from '../../controller/controller-service.js';
import { volumeListToken as listToken } from '../../controller/list-pages.js';
import { LocalPool } from '../../controller/local-pool.js';
import { NfsPools } from '../../controller/nfs-pools.js';
import { SelfNode } from '../../controller/nodes.js';
import { Code, CsiError } from '../../volume/errors.js';

describe('ListVolumes tokens and pages', () => {
  let dir: string;
  let controller: ControllerService;
  const cap = { access_type: 'mount', mount: { fs_type: '', mount_flags: [] }, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };
  type Page = { entries: Array<{ volume: { volume_id: string } }>; next_token: string };
  const list = (max: number, token = '') => controller.ListVolumes({ max_entries: max, starting_token: token } as never) as Promise<Page>;
  const create = (name: string) => controller.CreateVolume({ name, volume_capabilities: [cap], parameters: {} } as never);
  const remove = (id: string) => controller.DeleteVolume({ volume_id: id } as never);

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-list-unit-'));
    const pool = new LocalPool(dir);
    await pool.init();
    controller = new ControllerService({
      kind: 'all-in-one',
      nodeId: 'node-a',
      local: pool,
      nfs: new NfsPools(),
      nodes: new SelfNode('node-a', 0),
    });
    for (let i = 0; i < 25; i++) await create(`pvc-${String(i).padStart(2, '0')}`);
  });
  after(async () => fs.rm(dir, { recursive: true, force: true }));

  it('round-trips a token, and refuses one it did not issue with ABORTED', () => {
    expect(listToken.decode(listToken.encode('', 'pvc-07'))).to.deep.equal({ poolKey: '', dirName: 'pvc-07' });
    for (const forged of ['garbage', Buffer.from('v2:x\ny').toString('base64url'), `${listToken.encode('', 'a')}=`]) {
      expect(() => listToken.decode(forged), forged)
        .to.throw(CsiError)
        .with.property('code', Code.ABORTED);
    }
  });

  it('pages through every volume exactly once, while volumes are added and removed behind the cursor', async () => {
    const seen: string[] = [];
    let page = await list(10);
    seen.push(...page.entries.map((e) => e.volume.volume_id));
    await remove('local:node-a:share:pvc-00'); // already listed
    await create('pvc-99'); // after the cursor: must appear
    while (page.next_token) {
      page = await list(10, page.next_token);
      seen.push(...page.entries.map((e) => e.volume.volume_id));
    }
    expect(new Set(seen).size).to.equal(seen.length);
    expect(seen).to.include('local:node-a:share:pvc-99');
    expect(seen).to.have.length(26);
  });

  it('answers everything in one page for max_entries 0, and INVALID_ARGUMENT for a negative one', async () => {
    expect((await list(0)).next_token).to.equal('');
    await controller.ListVolumes({ max_entries: -1 } as never).then(
      () => expect.fail('accepted'),
      (err: CsiError) => expect(err.code).to.equal(Code.INVALID_ARGUMENT),
    );
  });
});
