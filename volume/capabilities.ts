// What each kind of volume can be used as, checked once for every RPC that
// carries a VolumeCapability.

import { SINGLE_NODE_MODES, type VolumeCapability } from './csi.js';
import { invalid } from './errors.js';
import type { VolumeKind } from './volume-id.js';

export const FS_TYPES = ['ext4', 'xfs', 'btrfs'] as const;
export type FsType = (typeof FS_TYPES)[number];
export const DEFAULT_FS_TYPE: FsType = 'ext4';

/** Smallest image each filesystem's mkfs accepts (and raw block). */
export const MIN_BLOCK_BYTES: Record<FsType | 'raw', number> = {
  raw: 1 << 20,
  ext4: 8 << 20,
  btrfs: 128 << 20,
  xfs: 300 << 20,
};

/** The reason a capability does not fit a kind, or undefined when it fits. */
export function capabilityProblem(kind: VolumeKind, cap: VolumeCapability): string | undefined {
  const mode = cap.access_mode?.mode;
  if (!mode || mode === 'UNKNOWN') return 'access_mode is required';
  if (!cap.access_type) return 'access_type (mount or block) is required';
  if (kind === 'share') {
    if (cap.access_type === 'block') return 'share volumes are directories: raw block access needs kind "block"';
    return undefined;
  }
  if (!SINGLE_NODE_MODES.has(mode)) return `block volumes are single-node: access mode ${mode} is not supported`;
  if (cap.access_type === 'mount') {
    const fsType = cap.mount?.fs_type ?? '';
    if (fsType !== '' && !(FS_TYPES as readonly string[]).includes(fsType)) {
      return `filesystem "${fsType}" is not supported (use ${FS_TYPES.join(', ')})`;
    }
  }
  return undefined;
}

export function requireCapabilities(kind: VolumeKind, caps: VolumeCapability[] | undefined): void {
  if (!caps?.length) throw invalid('volume_capabilities is required');
  for (const cap of caps) {
    const problem = capabilityProblem(kind, cap);
    if (problem) throw invalid(problem);
  }
}

/**
 * The filesystem a block volume is created for: the one all mount
 * capabilities agree on (ext4 when unsaid), '' when only raw access is asked.
 */
export function blockFsType(caps: VolumeCapability[]): FsType | '' {
  const asked = new Set(caps.filter((c) => c.access_type === 'mount').map((c) => c.mount?.fs_type || DEFAULT_FS_TYPE));
  if (asked.size > 1) throw invalid(`volume_capabilities ask for different filesystems: ${[...asked].join(', ')}`);
  const [fsType] = [...asked];
  return (fsType as FsType | undefined) ?? '';
}
