// Test harnesses that behave like the kubernetes-csi sidecars toward the
// controller service: external-provisioner (with --extra-create-metadata;
// kubernetes-csi/external-provisioner pkg/controller/controller.go) and
// external-attacher (kubernetes-csi/external-attacher pkg/attacher).
import { randomBytes, randomUUID } from 'node:crypto';
import { type CsiClients, rpc } from '../../cli/client.js';

export type AccessMode = 'ReadWriteOnce' | 'ReadOnlyMany' | 'ReadWriteMany' | 'ReadWriteOncePod';

export interface StorageClass {
  name: string;
  provisioner: string;
  parameters: Record<string, string>;
  mountOptions?: string[];
}

export interface Claim {
  uid: string;
  name: string;
  namespace: string;
  accessModes: AccessMode[];
  storage: number;
  volumeMode: 'Filesystem' | 'Block';
  /** The claim's dataSource, resolved as the provisioner does: a VolumeSnapshot's bound content's snapshot handle. */
  dataSource?: { snapshotHandle: string };
}

/** A new claim: ReadWriteOnce, 64 MiB, a filesystem, unless `over` says otherwise. */
export const newClaim = (name: string, over: Partial<Claim> = {}): Claim => ({
  uid: randomUUID(),
  name,
  namespace: 'default',
  accessModes: ['ReadWriteOnce'],
  storage: 64 * 1024 * 1024,
  volumeMode: 'Filesystem',
  ...over,
});

export interface PersistentVolume {
  name: string;
  driver: string;
  volumeHandle: string;
  volumeAttributes: Record<string, string>;
  fsType: string;
  accessModes: AccessMode[];
  volumeMode: 'Filesystem' | 'Block';
  mountOptions: string[];
  capacity: number;
  nodeAffinity: Array<Record<string, string>>;
}

const RESERVED_PREFIX = 'csi.storage.k8s.io/';
const FSTYPE = 'csi.storage.k8s.io/fstype';

const MODE: Record<AccessMode, string> = {
  ReadWriteOnce: 'SINGLE_NODE_WRITER',
  ReadOnlyMany: 'MULTI_NODE_READER_ONLY',
  ReadWriteMany: 'MULTI_NODE_MULTI_WRITER',
  ReadWriteOncePod: 'SINGLE_NODE_SINGLE_WRITER',
};

function capability(volumeMode: Claim['volumeMode'], mode: string, fsType: string, mountOptions: string[]) {
  return volumeMode === 'Block'
    ? { block: {}, access_mode: { mode } }
    : { mount: { fs_type: fsType, mount_flags: mountOptions }, access_mode: { mode } };
}

export class ExternalProvisioner {
  private readonly identity = `${Date.now()}-${randomBytes(2).readUInt16BE()}-berth.csi.dev`;

  /** `clients` is a getter: the sidecar reconnects after a driver restart. */
  constructor(private readonly connect: () => CsiClients) {}

  private get clients(): CsiClients {
    return this.connect();
  }

  /**
   * CreateVolume for a claim. `selectedNode`: the topology of the node the
   * scheduler chose (WaitForFirstConsumer), sent as requisite and preferred
   * alone, as --strict-topology does.
   */
  async provision(sc: StorageClass, pvc: Claim, selectedNode?: Record<string, string>): Promise<PersistentVolume> {
    const fsType = pvc.volumeMode === 'Block' ? '' : (sc.parameters[FSTYPE] ?? '');
    const parameters: Record<string, string> = {};
    for (const [k, v] of Object.entries(sc.parameters)) if (!k.startsWith(RESERVED_PREFIX)) parameters[k] = v;
    const pvName = `pvc-${pvc.uid}`;
    // --extra-create-metadata
    parameters['csi.storage.k8s.io/pvc/name'] = pvc.name;
    parameters['csi.storage.k8s.io/pvc/namespace'] = pvc.namespace;
    parameters['csi.storage.k8s.io/pv/name'] = pvName;
    const res = await rpc<{
      volume: {
        volume_id: string;
        capacity_bytes: string;
        volume_context: Record<string, string>;
        accessible_topology: Array<{ segments: Record<string, string> }>;
      };
    }>(this.clients.controller, 'CreateVolume', {
      name: pvName,
      capacity_range: { required_bytes: pvc.storage },
      volume_capabilities: pvc.accessModes.map((m) => capability(pvc.volumeMode, MODE[m], fsType, sc.mountOptions ?? [])),
      parameters,
      ...(pvc.dataSource ? { volume_content_source: { snapshot: { snapshot_id: pvc.dataSource.snapshotHandle } } } : {}),
      ...(selectedNode
        ? { accessibility_requirements: { requisite: [{ segments: selectedNode }], preferred: [{ segments: selectedNode }] } }
        : {}),
    });
    return {
      name: pvName,
      driver: sc.provisioner,
      volumeHandle: res.volume.volume_id,
      volumeAttributes: { ...res.volume.volume_context, 'storage.kubernetes.io/csiProvisionerIdentity': this.identity },
      fsType,
      accessModes: pvc.accessModes,
      volumeMode: pvc.volumeMode,
      mountOptions: sc.mountOptions ?? [],
      capacity: Number(res.volume.capacity_bytes) || pvc.storage,
      nodeAffinity: res.volume.accessible_topology.map((t) => t.segments),
    };
  }

  async delete(pv: PersistentVolume): Promise<void> {
    await rpc(this.clients.controller, 'DeleteVolume', { volume_id: pv.volumeHandle });
  }
}

export class ExternalAttacher {
  constructor(private readonly connect: () => CsiClients) {}

  private get clients(): CsiClients {
    return this.connect();
  }

  /** One capability for all the PV's access modes, as the attacher builds it. */
  private mode(modes: AccessMode[]): string {
    if (modes.length === 1) return MODE[modes[0]!];
    if (modes.includes('ReadWriteMany')) return 'MULTI_NODE_MULTI_WRITER';
    if (modes.includes('ReadOnlyMany') && modes.includes('ReadWriteOnce')) return 'MULTI_NODE_SINGLE_WRITER';
    return MODE[modes[0]!];
  }

  /** ControllerPublish for a VolumeAttachment; returns its attachmentMetadata. */
  async attach(pv: PersistentVolume, nodeId: string): Promise<Record<string, string>> {
    const res = await rpc<{ publish_context: Record<string, string> }>(this.clients.controller, 'ControllerPublishVolume', {
      volume_id: pv.volumeHandle,
      node_id: nodeId,
      volume_capability: capability(pv.volumeMode, this.mode(pv.accessModes), pv.fsType, pv.mountOptions),
      readonly: false, // PUBLISH_READONLY is not advertised
      volume_context: pv.volumeAttributes,
    });
    return res.publish_context;
  }

  async detach(pv: PersistentVolume, nodeId: string): Promise<void> {
    await rpc(this.clients.controller, 'ControllerUnpublishVolume', { volume_id: pv.volumeHandle, node_id: nodeId });
  }
}
