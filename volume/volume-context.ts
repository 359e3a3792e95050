// The controller → node contract, typed once: what a volume's
// volume_context and a ControllerPublishVolume's publish_context carry. The
// controller (and the FlexVolume migration) write them with the encoders;
// the node and the controller read them with the decoders. Whatever is read
// came over the wire and is untrusted: the NFS fields go through the one
// NFS validator, and a context that does not say a thing is read as not
// saying it, never as a default that widens what the node may do.
import { nfsVolumeSource } from './nfs.js';
import type { VolumeKind, VolumeRef } from './volume-id.js';

/** A volume of a node's local pool: the node finds it by its record. */
export interface LocalVolumeContext {
  pool: 'local';
  kind: VolumeKind;
  node: string;
  fsType?: string;
}

/** A volume on an NFS export: where its bytes are, for the node to mount. */
export interface NfsVolumeContext {
  pool: 'nfs';
  kind: VolumeKind;
  server: string;
  share: string;
  /** '' is the export's root (a share migrated from FlexVolume may be the whole export). */
  subDir: string;
  mountOptions: readonly string[];
  mountedAt?: string;
  fsType?: string;
  /** A PV made by hand (or migrated from FlexVolume): no record on the export. */
  static?: boolean;
}

export type VolumeContext = LocalVolumeContext | NfsVolumeContext;

/** The map CreateVolume returns (and a migrated PV's volumeAttributes hold). */
export function encodeVolumeContext(c: VolumeContext): Record<string, string> {
  const out: Record<string, string> =
    c.pool === 'local'
      ? { pool: 'local', kind: c.kind, node: c.node }
      : {
          pool: 'nfs',
          kind: c.kind,
          ...(c.static ? { static: 'true' } : {}),
          server: c.server,
          share: c.share,
          subDir: c.subDir,
          ...(c.mountOptions.length ? { mountOptions: c.mountOptions.join(',') } : {}),
          ...(c.mountedAt ? { mountedAt: c.mountedAt } : {}),
        };
  if (c.fsType) out.fsType = c.fsType;
  return out;
}

/**
 * What a node call's volume_context says about the volume `ref` names, as
 * the same union the controller wrote, checked. The pool, kind, server and
 * export come from the volume id, never from the context. An NFS volume's
 * context without a location (no subDir: a call that carries none) is
 * undefined; a location that fails the NFS validator is INVALID_ARGUMENT.
 */
export function decodeVolumeContext(raw: Record<string, string> | undefined, ref: VolumeRef): VolumeContext | undefined {
  const fsType = raw?.fsType ? { fsType: raw.fsType } : {};
  if (ref.pool === 'local') return { pool: 'local', kind: ref.kind, node: raw?.node ?? '', ...fsType };
  if (raw?.subDir === undefined) return undefined;
  const at = nfsVolumeSource({ ...raw, server: ref.server, share: ref.share }, { allowRoot: true });
  return { pool: 'nfs', kind: ref.kind, ...at, ...fsType, ...(raw.static === 'true' ? { static: true } : {}) };
}

/** A static NFS share's context (a hand-made or migrated PV), as its attributes say; undefined for anything else. */
export function staticNfsShareOf(raw: Record<string, string> | undefined): { server: string; share: string } | undefined {
  if (raw?.pool !== 'nfs' || raw.static !== 'true' || raw.kind !== 'share' || !raw.server || !raw.share) return undefined;
  return { server: raw.server, share: raw.share };
}

/** What ControllerPublishVolume tells the node. */
export interface PublishContext {
  kind: VolumeKind;
  /** Published read-only (PUBLISH_READONLY): the node stages and publishes read-only, whatever the pod asks. */
  readonly?: boolean;
}

export function encodePublishContext(p: PublishContext): Record<string, string> {
  return { kind: p.kind, ...(p.readonly ? { readonly: 'true' } : {}) };
}

/** What ControllerPublishVolume told the node; nothing but `readonly: 'true'` reads as read-only. */
export function decodePublishContext(raw: Record<string, string> | undefined): { readonly: boolean } {
  return { readonly: raw?.readonly === 'true' };
}
