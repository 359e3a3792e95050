// The CSI Identity service: who we are, what we offer, whether we are ready.
import type { IdentityHandlers } from './csi.js';
import type { Pipeline } from './pipeline.js';

export interface IdentityConfig {
  driverName: string;
  version: string;
  controller: boolean;
  /** Local pools make volumes reachable from one node only. */
  topology: boolean;
  /** Throws (FAILED_PRECONDITION with the reason) when not ready. */
  probe: () => Promise<void>;
}

export function identityHandlers(p: Pipeline, cfg: IdentityConfig): IdentityHandlers {
  return {
    GetPluginInfo: p.unary('GetPluginInfo', async () => ({ name: cfg.driverName, vendor_version: cfg.version })),
    GetPluginCapabilities: p.unary('GetPluginCapabilities', async () => {
      const capabilities: Array<Record<string, unknown>> = [];
      if (cfg.controller) capabilities.push({ service: { type: 'CONTROLLER_SERVICE' } });
      if (cfg.topology) capabilities.push({ service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } });
      capabilities.push({ volume_expansion: { type: 'ONLINE' } });
      return { capabilities };
    }),
    Probe: p.unary('Probe', async () => {
      await cfg.probe();
      return { ready: { value: true } };
    }),
  };
}
