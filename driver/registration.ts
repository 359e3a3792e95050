// Kubelet plugin registration (kubelet pkg/apis/pluginregistration/v1): the
// node plugin serves `Registration` on <kubelet>/plugins_registry/<driver>-reg.sock.
// The kubelet finds the socket, asks GetInfo, calls NodeGetInfo on the CSI
// endpoint we name, and reports the outcome with NotifyRegistrationStatus.
// A refusal is final for this process: it exits non-zero so the pod
// restarts, as node-driver-registrar does.
import path from 'node:path';
import type { RegistrationStatus } from '../volume/csi.js';
import type { Logger } from './log.js';

export const SUPPORTED_VERSIONS = ['1.0.0'];

export function registrationSocketPath(kubeletDir: string, driverName: string): string {
  return path.join(kubeletDir, 'plugins_registry', `${driverName}-reg.sock`);
}

export interface RegistrationConfig {
  driverName: string;
  /** The CSI socket as the kubelet (on the host) sees it. */
  endpoint: string;
  log: Logger;
  /** Called once the kubelet has refused the plugin. */
  onRefused: (reason: string) => void;
}

export class RegistrationService {
  constructor(private readonly cfg: RegistrationConfig) {}

  async GetInfo() {
    return { type: 'CSIPlugin', name: this.cfg.driverName, endpoint: this.cfg.endpoint, supported_versions: SUPPORTED_VERSIONS };
  }

  async NotifyRegistrationStatus(status: RegistrationStatus) {
    const { log, driverName, endpoint, onRefused } = this.cfg;
    if (status.plugin_registered) {
      log.info('registered with the kubelet', { driverName, endpoint });
    } else {
      log.error('the kubelet REFUSED the plugin registration; exiting so the pod restarts', { error: status.error });
      setImmediate(() => onRefused(status.error));
    }
    return {};
  }
}
