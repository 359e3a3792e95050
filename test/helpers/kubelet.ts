// The kubelet's path shapes (kubernetes pkg/volume/csi: csi_attacher.go for
// the staging path, csi_mounter.go for the target) and the directory work it
// does around node calls, for tests that play the kubelet.
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

export const DRIVER = 'berth.csi.dev';

export class KubeletPaths {
  constructor(readonly root: string) {}

  /** k8s ≥ 1.24: plugins/kubernetes.io/csi/<driver>/<sha256(volume_id)>/globalmount */
  staging(volumeId: string): string {
    const hash = createHash('sha256').update(volumeId).digest('hex');
    return path.join(this.root, 'plugins/kubernetes.io/csi', DRIVER, hash, 'globalmount');
  }

  /** pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount */
  target(podUid: string, pv: string): string {
    return path.join(this.root, 'pods', podUid, 'volumes/kubernetes.io~csi', pv, 'mount');
  }

  blockStaging(pv: string): string {
    return path.join(this.root, 'plugins/kubernetes.io/csi/volumeDevices/staging', pv);
  }

  blockTarget(pv: string, podUid: string): string {
    return path.join(this.root, 'plugins/kubernetes.io/csi/volumeDevices/publish', pv, podUid);
  }

  /** What the kubelet does before NodeStage: the staging dir, mode 0750. */
  async prepareStage(staging: string): Promise<void> {
    await fs.mkdir(staging, { recursive: true, mode: 0o750 });
  }

  /** What the kubelet does before NodePublish: the parent of target_path. */
  async preparePublish(target: string): Promise<void> {
    await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o750 });
  }
}

export const podUid = () => randomUUID();
