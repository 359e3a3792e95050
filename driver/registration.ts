// Kubelet plugin registration (kubelet pkg/apis/pluginregistration/v1): the
// node plugin serves `Registration` on <kubelet>/plugins_registry/<driver>-reg.sock.
// The kubelet finds the socket, asks GetInfo, calls NodeGetInfo on the CSI
// endpoint we name, and reports the outcome with NotifyRegistrationStatus.
// A refusal is final for this process: it exits non-zero so the pod
// restarts, as node-driver-registrar does.
import path from 'node:path';
import type { RegistrationHandlers, RegistrationStatus } from './csi.js';
import type { Logger } from './log.js';
import type { Pipeline } from './pipeline.js';

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

export function registrationHandlers(p: Pipeline, cfg: RegistrationConfig): RegistrationHandlers {
  return {
    GetInfo: p.unary('GetInfo', async () => ({
      type: 'CSIPlugin',
      name: cfg.driverName,
      endpoint: cfg.endpoint,
      supported_versions: SUPPORTED_VERSIONS,
    })),
    NotifyRegistrationStatus: p.unary('NotifyRegistrationStatus', async (status: RegistrationStatus) => {
      if (status.plugin_registered) {
        cfg.log.info('registered with the kubelet', { driverName: cfg.driverName, endpoint: cfg.endpoint });
      } else {
        cfg.log.error('the kubelet REFUSED the plugin registration; exiting so the pod restarts', { error: status.error });
        setImmediate(() => cfg.onRefused(status.error));
      }
      return {};
    }),
  };
}
