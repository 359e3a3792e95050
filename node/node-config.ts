// What the node service is given by the process (driver/main.ts).
import type { Host } from '../host/index.js';
import type { LocalPoolLayout } from '../volume/local-layout.js';

export interface NodeConfig {
  nodeId: string;
  /** The local pool on this node (its records say where a volume's bytes are); undefined on the NFS driver's node plugin. */
  pool?: LocalPoolLayout;
  /** Whether this node plugin serves NFS volumes (false on a node's local driver). */
  servesNfs: boolean;
  /**
   * Grows a local volume's image and record to at least `bytes`: the local
   * driver has no controller expansion, so NodeExpandVolume does it first.
   */
  growLocalVolume?: (volumeId: string, bytes: number) => Promise<void>;
  /** Where this node mounts NFS exports that hold block images. */
  nfsMountDir: string;
  /** The only directories a volume_context mountedAt may name (pre-mounted exports). */
  mountedAtDirs: readonly string[];
  kubeletDir: string;
  /** Where the node records what it staged and how (stage-records.ts). */
  stateDir: string;
  maxVolumesPerNode: number;
  host: Host;
}
