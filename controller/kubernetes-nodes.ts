// The central controller's view of the nodes: the CSINode objects the
// kubelets keep (kubernetes pkg/volume/csi/nodeinfomanager). A node runs
// berth when its CSINode lists this driver; the entry's nodeID is what
// NodeGetInfo returned there (the node_id external-attacher sends to
// ControllerPublishVolume) and allocatable.count its max_volumes_per_node.
// Read with the RBAC the attacher already needs: get/list csinodes.
import { unavailable } from '../volume/errors.js';
import type { NodeDirectory } from './nodes.js';

/** A kubeconfig file, or the pod's service account when undefined (in-cluster). */
export interface ApiAccess {
  kubeconfig?: string;
}

interface NodeFacts {
  maxVolumes: number;
}

type Lister = () => Promise<Array<{ drivers: Array<{ name: string; nodeID: string; count?: number }> }>>;

/** Fresh enough to answer from: a node that registered since is looked up again at once. */
const FRESH_MS = 10_000;

export class KubernetesNodes implements NodeDirectory {
  private nodes = new Map<string, NodeFacts>();
  private listedAt = 0;
  private listing: Promise<void> | undefined;

  private constructor(
    private readonly driverName: string,
    private readonly listCsiNodes: Lister,
  ) {}

  /** Loaded lazily: the client library is large and only the central controller needs it. */
  static async connect(driverName: string, access: ApiAccess): Promise<KubernetesNodes> {
    const k8s = await import('@kubernetes/client-node');
    const config = new k8s.KubeConfig();
    if (access.kubeconfig) config.loadFromFile(access.kubeconfig);
    else config.loadFromCluster();
    const api = config.makeApiClient(k8s.StorageV1Api);
    return new KubernetesNodes(driverName, async () => {
      const list = await api.listCSINode();
      return list.items.map((n) => ({
        drivers: (n.spec?.drivers ?? []).map((d) => ({ name: d.name, nodeID: d.nodeID, count: d.allocatable?.count })),
      }));
    });
  }

  async exists(nodeId: string): Promise<boolean> {
    if (this.nodes.has(nodeId) && Date.now() - this.listedAt < FRESH_MS) return true;
    await this.refresh();
    return this.nodes.has(nodeId);
  }

  async maxVolumes(nodeId: string): Promise<number> {
    if (!this.nodes.has(nodeId)) await this.refresh();
    return this.nodes.get(nodeId)?.maxVolumes ?? 0;
  }

  /** One list at a time; callers arriving meanwhile share it. */
  private refresh(): Promise<void> {
    this.listing ??= this.list().finally(() => {
      this.listing = undefined;
    });
    return this.listing;
  }

  private async list(): Promise<void> {
    let items: Awaited<ReturnType<Lister>>;
    try {
      items = await this.listCsiNodes();
    } catch (err) {
      // UNAVAILABLE: the attacher retries; accepting an unknown node could record an attachment nobody detaches.
      throw unavailable(`cannot list the CSINode objects to look up nodes: ${(err as Error).message}`);
    }
    const nodes = new Map<string, NodeFacts>();
    for (const item of items) {
      for (const d of item.drivers) if (d.name === this.driverName && d.nodeID) nodes.set(d.nodeID, { maxVolumes: d.count ?? 0 });
    }
    this.nodes = nodes;
    this.listedAt = Date.now();
  }
}
