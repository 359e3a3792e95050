// The kubelet's directory layout for CSI volumes (k8s ≥ 1.24), for tools
// that stage and publish the way the kubelet does.
import { createHash } from 'node:crypto';
import path from 'node:path';

export function stagingPath(kubeletDir: string, driver: string, volumeId: string, raw: boolean, pvName: string): string {
  if (raw) return path.join(kubeletDir, 'plugins/kubernetes.io/csi/volumeDevices/staging', pvName);
  const hash = createHash('sha256').update(volumeId).digest('hex');
  return path.join(kubeletDir, 'plugins/kubernetes.io/csi', driver, hash, 'globalmount');
}

export function targetPath(kubeletDir: string, podUid: string, pvName: string, raw: boolean): string {
  if (raw) return path.join(kubeletDir, 'plugins/kubernetes.io/csi/volumeDevices/publish', pvName, podUid);
  return path.join(kubeletDir, 'pods', podUid, 'volumes/kubernetes.io~csi', pvName, 'mount');
}
