// Migration from FlexVolume NFS PVs to berth CSI PVs: the output is a valid
// PersistentVolume, and the driver serves it from the same data.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { PersistentVolume } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { migrateFlexPVs } from '../../flex/migrate.js';
import { Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { flexExecutable } from '../helpers/flex-executable.js';
import { Ganesha } from '../helpers/ganesha.js';
import { KubeletPaths, podUid } from '../helpers/kubelet.js';
import { MountRecorder } from '../helpers/mount-recorder.js';

const run = promisify(execFile);

// The seed a legacy user has today (kubernetes/examples volumes/flexvolume, the NFS shape), bound to a claim.
const SEED = `apiVersion: v1
kind: PersistentVolume
metadata:
  name: legacy-nfs
  uid: 1b7a6b1e-0000-4000-8000-000000000001
  resourceVersion: "4242"
  labels: {team: a}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: legacy
  claimRef: {kind: PersistentVolumeClaim, namespace: default, name: data, uid: 7c0a0000-0000-4000-8000-000000000002, resourceVersion: "17"}
  flexVolume:
    driver: k8s/nfs
    fsType: nfs
    options: {server: 10.10.0.25, share: export}
`;

type PV = {
  metadata: { name: string; annotations: Record<string, string>; labels?: Record<string, string>; uid?: string };
  spec: Record<string, unknown> & {
    csi: { driver: string; volumeHandle: string; volumeAttributes: Record<string, string>; readOnly?: boolean };
  };
};
const docs = (yaml: string) => parseAllDocuments(yaml).map((d) => d.toJS() as PV);

describe('FlexVolume to CSI migration (berth-flex migrate)', function () {
  this.timeout(60_000);

  it('turns the legacy {server, share} PV into a berth CSI PV that keeps name, claim, capacity and policy', () => {
    const result = migrateFlexPVs(SEED);
    expect(result.migrated).to.deep.equal(['legacy-nfs']);
    const [pv] = docs(result.yaml);
    expect(() => new PersistentVolume(pv as never).validate()).to.not.throw();
    expect(pv!.metadata.name).to.equal('legacy-nfs');
    expect(pv!.metadata.uid).to.equal(undefined);
    expect(pv!.metadata.labels).to.deep.equal({ team: 'a' });
    expect(pv!.metadata.annotations['berth.csi.dev/migrated-from-flexvolume']).to.equal('k8s/nfs');
    expect(pv!.spec).to.deep.include({
      capacity: { storage: '10Gi' },
      accessModes: ['ReadWriteMany'],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: 'legacy',
    });
    expect(pv!.spec.claimRef).to.deep.equal({
      kind: 'PersistentVolumeClaim',
      namespace: 'default',
      name: 'data',
      uid: '7c0a0000-0000-4000-8000-000000000002',
    });
    expect(pv!.spec.flexVolume).to.equal(undefined);
    expect(pv!.spec.csi).to.deep.equal({
      driver: 'berth.csi.dev',
      volumeHandle: 'nfs:10.10.0.25:/export:share:legacy-nfs',
      volumeAttributes: { pool: 'nfs', kind: 'share', static: 'true', server: '10.10.0.25', share: '/export', subDir: '' },
    });
  });

  it('carries berth/nfs subDir, mount options and read-only; skips what is not an NFS FlexVolume, saying why', () => {
    const list = `apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: PersistentVolume
    metadata: {name: team-b}
    spec:
      capacity: {storage: 1Gi}
      accessModes: [ReadOnlyMany]
      mountOptions: [hard]
      flexVolume:
        driver: berth/nfs
        readOnly: true
        options: {server: nas.example.com, share: /exports/k8s/, subDir: team-b/data, mountOptions: "nfsvers=4.1"}
  - apiVersion: v1
    kind: PersistentVolume
    metadata: {name: a-block}
    spec:
      capacity: {storage: 1Gi}
      accessModes: [ReadWriteOnce]
      flexVolume: {driver: berth/block, options: {pool: /p, image: x}}
  - apiVersion: v1
    kind: PersistentVolume
    metadata: {name: host}
    spec:
      capacity: {storage: 1Gi}
      accessModes: [ReadWriteOnce]
      hostPath: {path: /data}
  - apiVersion: v1
    kind: PersistentVolume
    metadata: {name: sneaky}
    spec:
      capacity: {storage: 1Gi}
      accessModes: [ReadWriteMany]
      flexVolume: {driver: k8s/nfs, options: {server: nas, share: /e, subDir: ../../etc}}
`;
    const result = migrateFlexPVs(list);
    expect(result.migrated).to.deep.equal(['team-b']);
    expect(result.skipped.map((s) => s.name)).to.deep.equal(['a-block', 'host', 'sneaky']);
    expect(result.skipped[2]!.reason).to.contain('..');
    const [pv] = docs(result.yaml);
    expect(() => new PersistentVolume(pv as never).validate()).to.not.throw();
    expect(pv!.spec.csi.readOnly).to.equal(true);
    expect(pv!.spec.csi.volumeAttributes).to.include({ share: '/exports/k8s', subDir: 'team-b/data', mountOptions: 'nfsvers=4.1,hard' });
  });

  it('runs as `berth-flex migrate <file>`, YAML on stdout, notes on stderr', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-migrate-'));
    try {
      await fs.writeFile(path.join(dir, 'pvs.yaml'), SEED);
      const { stdout, stderr } = await run(await flexExecutable(), ['migrate', path.join(dir, 'pvs.yaml')]);
      expect(docs(stdout)[0]!.spec.csi.volumeHandle).to.equal('nfs:10.10.0.25:/export:share:legacy-nfs');
      expect(stderr).to.contain('migrated 1');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  describe('the migrated PV serves the same data', () => {
    let dir: string;
    let g: Ganesha;
    let d: DriverProcess;
    let mounts: MountRecorder;
    before(async () => {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-migrate-'));
      g = new Ganesha(dir);
      await g.start();
      mounts = await MountRecorder.create(dir);
      d = await DriverProcess.start({ mode: 'all', env: { PATH: mounts.path() }, extraArgs: ['--mounted-at-dirs', g.exportDir] });
    });
    after(async () => {
      await d?.cleanup();
      await g?.stop();
      await fs.rm(dir, { recursive: true, force: true });
    });

    const legacy = (server: string, share: string) =>
      SEED.replace('server: 10.10.0.25', `server: ${server}`).replace('share: export', `share: ${share}`);

    it('the attacher can publish it (a static volume) and the node mounts the same export (no kernel NFS client here: checked by its command line)', async () => {
      const [pv] = docs(migrateFlexPVs(legacy('127.0.0.1', g.exportPath)).yaml);
      const cap = mountCap('MULTI_NODE_MULTI_WRITER');
      const ctx = await rpc<{ publish_context: Record<string, string> }>(d.clients.controller, 'ControllerPublishVolume', {
        volume_id: pv!.spec.csi.volumeHandle,
        node_id: 'node-a',
        volume_capability: cap,
        volume_context: pv!.spec.csi.volumeAttributes,
      });
      expect(ctx.publish_context).to.deep.equal({ kind: 'share' });
      // Without the attributes it is an unknown volume, as before.
      await expectCode(
        rpc(d.clients.controller, 'ControllerPublishVolume', {
          volume_id: pv!.spec.csi.volumeHandle,
          node_id: 'node-a',
          volume_capability: cap,
        }),
        Code.NOT_FOUND,
      );
      const k = new KubeletPaths(d.kubeletDir);
      const staging = k.staging(pv!.spec.csi.volumeHandle);
      await k.prepareStage(staging);
      await expectCode(
        rpc(d.clients.node, 'NodeStageVolume', {
          volume_id: pv!.spec.csi.volumeHandle,
          staging_target_path: staging,
          volume_capability: cap,
          volume_context: { ...pv!.spec.csi.volumeAttributes, mountOptions: 'nfsvers=4.1' },
        }),
        Code.INTERNAL,
      );
      expect((await mounts.calls()).at(-1)).to.equal(`mount -t nfs -o nfsvers=4.1 -- 127.0.0.1:${g.exportPath} ${staging}`);
    });

    it('with --mounted-at, data written under FlexVolume is read through the migrated CSI PV', async () => {
      await fs.writeFile(path.join(g.exportDir, 'written-by-flexvolume'), 'old data');
      const [pv] = docs(migrateFlexPVs(legacy('127.0.0.1', g.exportPath), { mountedAt: g.exportDir }).yaml);
      const cap = mountCap('MULTI_NODE_MULTI_WRITER');
      const k = new KubeletPaths(d.kubeletDir);
      const id = pv!.spec.csi.volumeHandle;
      const attrs = pv!.spec.csi.volumeAttributes;
      await rpc(d.clients.controller, 'ControllerPublishVolume', {
        volume_id: id,
        node_id: 'node-a',
        volume_capability: cap,
        volume_context: attrs,
      });
      const staging = k.staging(id);
      await k.prepareStage(staging);
      await rpc(d.clients.node, 'NodeStageVolume', {
        volume_id: id,
        staging_target_path: staging,
        volume_capability: cap,
        volume_context: attrs,
      });
      const target = k.target(podUid(), pv!.metadata.name);
      await k.preparePublish(target);
      await rpc(d.clients.node, 'NodePublishVolume', {
        volume_id: id,
        staging_target_path: staging,
        target_path: target,
        volume_capability: cap,
        volume_context: attrs,
      });
      expect(await fs.readFile(path.join(target, 'written-by-flexvolume'), 'utf8')).to.equal('old data');
      await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: id, target_path: target });
      await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
      await rpc(d.clients.controller, 'ControllerUnpublishVolume', { volume_id: id, node_id: 'node-a' });
      expect(await fs.readFile(path.join(g.exportDir, 'written-by-flexvolume'), 'utf8')).to.equal('old data');
    });
  });
});
