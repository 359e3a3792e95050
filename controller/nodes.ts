// Which nodes ControllerPublishVolume may attach volumes to, and how many
// each takes. The spec answers NOT_FOUND for a node that does not exist and
// RESOURCE_EXHAUSTED past a node's max_volumes_per_node. The central
// controller reads them from the CSINode objects (kubernetes-nodes.ts).
export interface NodeDirectory {
  /** Whether `nodeId` names a node that runs this driver (throws UNAVAILABLE when that cannot be told now). */
  exists(nodeId: string): Promise<boolean>;
  /** The most volumes the node takes (its NodeGetInfo max_volumes_per_node); 0: no limit. */
  maxVolumes(nodeId: string): Promise<number>;
}

/** All-in-one: this process is the controller and the one node. */
export class SelfNode implements NodeDirectory {
  constructor(
    readonly nodeId: string,
    private readonly maxVolumesPerNode: number,
  ) {}

  async exists(nodeId: string): Promise<boolean> {
    return nodeId === this.nodeId;
  }

  async maxVolumes(nodeId: string): Promise<number> {
    return nodeId === this.nodeId ? this.maxVolumesPerNode : 0;
  }
}
