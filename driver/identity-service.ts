// The CSI Identity service: who we are, what we offer, whether we are ready.

export interface IdentityConfig {
  driverName: string;
  version: string;
  controller: boolean;
  /** The GroupController service (group snapshots), served with the controller. */
  groupController?: boolean;
  /** The SnapshotMetadata service (changed-block tracking), served where there is a local pool. */
  snapshotMetadata?: boolean;
  /** Local pools make volumes reachable from one node only. */
  topology: boolean;
  /** Throws (FAILED_PRECONDITION with the reason) when not ready. */
  probe: () => Promise<void>;
}

export class IdentityService {
  constructor(private readonly cfg: IdentityConfig) {}

  async GetPluginInfo() {
    return { name: this.cfg.driverName, vendor_version: this.cfg.version };
  }

  async GetPluginCapabilities() {
    const capabilities: Array<Record<string, unknown>> = [];
    if (this.cfg.controller) capabilities.push({ service: { type: 'CONTROLLER_SERVICE' } });
    if (this.cfg.groupController) capabilities.push({ service: { type: 'GROUP_CONTROLLER_SERVICE' } });
    if (this.cfg.snapshotMetadata) capabilities.push({ service: { type: 'SNAPSHOT_METADATA_SERVICE' } });
    if (this.cfg.topology) capabilities.push({ service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } });
    capabilities.push({ volume_expansion: { type: 'ONLINE' } });
    return { capabilities };
  }

  async Probe() {
    await this.cfg.probe();
    return { ready: { value: true } };
  }
}
