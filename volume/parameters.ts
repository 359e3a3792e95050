// StorageClass parameters, validated once at the edge into a typed value.
import { invalid } from './errors.js';
import { mountedAt, mountOptions, type NfsLocation, nfsServer, nfsShare, nfsSubDir } from './nfs.js';

export type { NfsLocation };

import type { OnDelete } from './record.js';
import { VOLUME_KINDS, type VolumeKind, volumeDirName } from './volume-id.js';

export type { OnDelete };
export type PoolType = 'local' | 'nfs';

/** Where an NFS class puts volumes, and how nodes reach them. */
export interface NfsParameters extends NfsLocation {
  /** The directory of each volume on the share, before template expansion. */
  subDir: string;
  /** Mount options nodes use for `mount -t nfs`. */
  mountOptions: string[];
  /** Where every node already has the export mounted (berth then never mounts NFS). */
  mountedAt?: string;
}

/** Block images: reserved in full at create (thick), or allocated as written (thin, bounded by the pool's overprovisioning limit). */
export type Provisioning = 'thick' | 'thin';

interface CommonParameters {
  kind: VolumeKind;
  /** Block kind only; shares are directories, which use what they hold. */
  provisioning: Provisioning;
  onDelete: OnDelete;
  /** Mode bits for a share's directory. */
  mountPermissions: number;
  /** The external-provisioner's --extra-create-metadata keys, when sent. */
  pvcName?: string;
  pvcNamespace?: string;
  pvName?: string;
}

/** A StorageClass's parameters, checked: the pool type says which fields there are. */
export type VolumeParameters = CommonParameters & ({ pool: 'local' } | { pool: 'nfs'; nfs: NfsParameters });

/** Keys the external-provisioner adds with --extra-create-metadata. */
export const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
export const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
export const PV_NAME = 'csi.storage.k8s.io/pv/name';

const KNOWN = new Set(['pool', 'kind', 'onDelete', 'mountPermissions', 'provisioning', PVC_NAME, PVC_NAMESPACE, PV_NAME]);
const NFS_KEYS = new Set(['server', 'share', 'subDir', 'mountOptions', 'nfsPort', 'mountPort', 'mountedAt', 'nfsUid', 'nfsGid']);

function oneOf<T extends string>(key: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined || value === '') return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw invalid(`parameter "${key}" must be one of ${allowed.join(', ')}; got "${value}"`);
}

export function parseParameters(params: Record<string, string>): VolumeParameters {
  const pool = oneOf('pool', params.pool, ['local', 'nfs'] as const, 'local');
  for (const key of Object.keys(params)) {
    if (!KNOWN.has(key) && !(pool === 'nfs' && NFS_KEYS.has(key))) {
      throw invalid(`unknown StorageClass parameter "${key}"${NFS_KEYS.has(key) ? ' (it belongs to pool: nfs)' : ''}`);
    }
  }
  const kind = oneOf('kind', params.kind, VOLUME_KINDS, 'share');
  const onDelete = oneOf('onDelete', params.onDelete, ['delete', 'retain', 'archive'] as const, 'delete');
  let mountPermissions = 0o777;
  if (params.mountPermissions !== undefined && params.mountPermissions !== '') {
    if (!/^0?[0-7]{3,4}$/.test(params.mountPermissions)) {
      throw invalid(`parameter "mountPermissions" must be an octal mode such as 0770; got "${params.mountPermissions}"`);
    }
    mountPermissions = parseInt(params.mountPermissions, 8);
    if (mountPermissions > 0o7777) throw invalid('parameter "mountPermissions" is out of range');
  }
  if (kind === 'block' && params.mountPermissions !== undefined) {
    throw invalid('parameter "mountPermissions" applies to the share kind only');
  }
  if (kind === 'share' && params.provisioning !== undefined) throw invalid('parameter "provisioning" applies to the block kind only');
  // NFSv3 has no way to reserve space short of writing every byte: images on NFS pools are thin.
  const provisioning = oneOf(
    'provisioning',
    params.provisioning,
    ['thick', 'thin'] as const,
    pool === 'nfs' || kind === 'share' ? 'thin' : 'thick',
  );
  if (pool === 'nfs' && provisioning === 'thick') {
    throw invalid('parameter "provisioning": NFS pools cannot reserve space (NFSv3 has no ALLOCATE); use thin');
  }
  const common: CommonParameters = {
    kind,
    provisioning,
    onDelete,
    mountPermissions,
    pvcName: params[PVC_NAME],
    pvcNamespace: params[PVC_NAMESPACE],
    pvName: params[PV_NAME],
  };
  if (pool === 'nfs') {
    const server = nfsServer(params.server, 'parameter "server"');
    const share = nfsShare(params.share, 'parameter "share"');
    const options = mountOptions(params.mountOptions);
    const port = (key: string) => {
      const v = params[key];
      if (v === undefined || v === '') return undefined;
      if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw invalid(`parameter "${key}" must be a TCP port`);
      return Number(v);
    };
    const id = (key: string) => {
      const v = params[key];
      if (v === undefined || v === '') return undefined;
      if (!/^\d{1,10}$/.test(v) || Number(v) > 0xfffffffe) throw invalid(`parameter "${key}" must be a numeric user or group id`);
      return Number(v);
    };
    const uid = id('nfsUid');
    const gid = id('nfsGid') ?? uid;
    if (uid === undefined && gid !== undefined) throw invalid('parameter "nfsGid" needs "nfsUid"');
    const nfs: NfsParameters = {
      server,
      share,
      nfsPort: port('nfsPort'),
      mountPort: port('mountPort'),
      ...(uid !== undefined ? { uid, gid } : {}),
      subDir: params.subDir || '${pv.metadata.name}',
      mountOptions: options,
      mountedAt: mountedAt(params.mountedAt, 'parameter "mountedAt"'),
    };
    return { ...common, pool, nfs };
  }
  return { ...common, pool };
}

/** Parameters that define the volume (compared when a name is reused). */
export function identityParameters(params: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(params).sort()) {
    if (key !== PVC_NAME && key !== PVC_NAMESPACE && key !== PV_NAME) out[key] = params[key] as string;
  }
  return out;
}

const TEMPLATE = /\$\{(pvc\.metadata\.name|pvc\.metadata\.namespace|pv\.metadata\.name)\}/g;

/**
 * Expands a subDir template for one volume and checks that the result can
 * never leave the share: relative, no "." or "..", plain components, no NUL.
 * `${pv.metadata.name}` falls back to the volume's directory name (volumeDirName).
 */
export function expandSubDir(template: string, p: VolumeParameters, volumeName: string): string {
  const values: Record<string, string | undefined> = {
    'pvc.metadata.name': p.pvcName,
    'pvc.metadata.namespace': p.pvcNamespace,
    // Without the provisioner's metadata, the volume's own directory name (a hash when the CSI name is not plain).
    'pv.metadata.name': p.pvName ?? volumeDirName(volumeName),
  };
  const leftover = template.replace(TEMPLATE, '').match(/\$\{[^}]*\}/);
  if (leftover)
    throw invalid(
      `subDir template uses ${leftover[0]}; only \${pvc.metadata.name}, \${pvc.metadata.namespace} and \${pv.metadata.name} exist`,
    );
  const out = template.replace(TEMPLATE, (_m, key: string) => {
    const v = values[key];
    if (!v)
      throw invalid(`subDir template needs ${key}, which this request does not carry (run the provisioner with --extra-create-metadata)`);
    return v;
  });
  return nfsSubDir(out);
}

/**
 * What a VolumeAttributesClass may change on a volume (CreateVolume's and
 * ControllerModifyVolume's mutable_parameters): onDelete, and a local block
 * image's provisioning (thin → thick reserves the image; thick → thin
 * releases its unwritten blocks).
 */
export interface MutableParameters {
  onDelete?: OnDelete;
  provisioning?: Provisioning;
}

const MUTABLE_KEYS = new Set(['onDelete', 'provisioning']);

export function parseMutableParameters(params: Record<string, string>): MutableParameters {
  for (const key of Object.keys(params)) {
    if (!MUTABLE_KEYS.has(key)) throw invalid(`mutable parameter "${key}" is not one berth can change (onDelete, provisioning)`);
  }
  const out: MutableParameters = {};
  if (params.onDelete) out.onDelete = oneOf('onDelete', params.onDelete, ['delete', 'retain', 'archive'] as const, 'delete');
  if (params.provisioning) out.provisioning = oneOf('provisioning', params.provisioning, ['thick', 'thin'] as const, 'thin');
  return out;
}

/**
 * VolumeSnapshotClass parameters: `freeze` (default true) freezes a staged
 * block volume's filesystem for the instant of a local snapshot; false
 * takes it as the image is (consistent as after a power cut only if the
 * application flushes). The snapshotter's own csi.storage.k8s.io/ keys are ignored.
 */
export function parseSnapshotParameters(params: Record<string, string>): { freeze: boolean } {
  for (const key of Object.keys(params)) {
    if (key !== 'freeze' && !key.startsWith('csi.storage.k8s.io/'))
      throw invalid(`unknown VolumeSnapshotClass parameter "${key}" (berth knows freeze)`);
  }
  return { freeze: oneOf('freeze', params.freeze, ['true', 'false'] as const, 'true') === 'true' };
}

/**
 * The parameter keys whose values differ, named without their values:
 * values such as mountOptions may carry credentials, and messages are logged.
 */
export function differingKeys(a: Record<string, string>, b: Record<string, string>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => a[k] !== b[k]).sort();
}
