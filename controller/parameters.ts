// StorageClass parameters, validated once at the edge into a typed value.
import { invalid } from '../driver/errors.js';
import type { VolumeKind } from './volume-id.js';

export type OnDelete = 'delete' | 'retain' | 'archive';
export type PoolType = 'local';

export interface VolumeParameters {
  pool: PoolType;
  kind: VolumeKind;
  onDelete: OnDelete;
  /** Mode bits for a share's directory. */
  mountPermissions: number;
  /** The external-provisioner's --extra-create-metadata keys, when sent. */
  pvcName?: string;
  pvcNamespace?: string;
  pvName?: string;
}

/** Keys the external-provisioner adds with --extra-create-metadata. */
export const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
export const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
export const PV_NAME = 'csi.storage.k8s.io/pv/name';

const KNOWN = new Set(['pool', 'kind', 'onDelete', 'mountPermissions', PVC_NAME, PVC_NAMESPACE, PV_NAME]);

function oneOf<T extends string>(key: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined || value === '') return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw invalid(`parameter "${key}" must be one of ${allowed.join(', ')}; got "${value}"`);
}

export function parseParameters(params: Record<string, string>): VolumeParameters {
  for (const key of Object.keys(params)) {
    if (!KNOWN.has(key)) throw invalid(`unknown StorageClass parameter "${key}"`);
  }
  const pool = oneOf('pool', params.pool, ['local'] as const, 'local');
  const kind = oneOf('kind', params.kind, ['share', 'block'] as const, 'share');
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
  return {
    pool,
    kind,
    onDelete,
    mountPermissions,
    pvcName: params[PVC_NAME],
    pvcNamespace: params[PVC_NAMESPACE],
    pvName: params[PV_NAME],
  };
}

/** Parameters that define the volume (compared when a name is reused). */
export function identityParameters(params: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(params).sort()) {
    if (key !== PVC_NAME && key !== PVC_NAMESPACE && key !== PV_NAME) out[key] = params[key] as string;
  }
  return out;
}
