// The one codec for volume ids. Nothing else splits or joins id strings.
//
// A local-pool id reads `local:<node>:<kind>:<dir>`: the pool type, the node
// whose pool holds it, the kind, and the volume's directory name inside the
// pool. An NFS id reads `nfs:<server>[@<nfsPort>@<mountPort>[@<uid>.<gid>]]:
// <share>:<kind>:<dir>` (":" and "%" escaped in server and share): the ports
// skip the portmapper, the identity is what berth acts as on a root_squash
// export. DeleteVolume gets nothing but this id, so it must be enough; it
// stays within the spec's 128 bytes by hashing what would not fit.
import { createHash } from 'node:crypto';
import { type NfsLocation, nfsServer, nfsShare } from './nfs.js';

export type VolumeKind = 'share' | 'block';
export const VOLUME_KINDS: readonly VolumeKind[] = ['share', 'block'];
const isKind = (k: string): k is VolumeKind => (VOLUME_KINDS as readonly string[]).includes(k);

export interface LocalVolumeRef {
  pool: 'local';
  /** The node as encoded in the id: compare with encodeNode(), never raw. */
  node: string;
  kind: VolumeKind;
  /** Directory name of the volume inside the pool (safe path component). */
  dirName: string;
}

/** An NFS volume: the export it lives on and its record's key there. */
export interface NfsVolumeRef extends NfsLocation {
  pool: 'nfs';
  kind: VolumeKind;
  dirName: string;
}

export type VolumeRef = LocalVolumeRef | NfsVolumeRef;

export const MAX_ID_BYTES = 128;
const SAFE_DIR = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const HASHED_DIR = /^h-[0-9a-f]{40}$/;
const PLAIN_NODE = /^[a-z0-9]([a-z0-9.-]{0,40}[a-z0-9])?$/;
const HASHED_NODE = /^~[0-9a-f]{16}$/;

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/**
 * The pool directory name for a CO volume name. Plain names (what the
 * external-provisioner sends: pvc-<uid>) are kept readable; anything else
 * (slashes, dots, unicode, long names) becomes a hash, so a name can never
 * make a path that leaves the pool.
 */
export function volumeDirName(name: string): string {
  if (SAFE_DIR.test(name) && !HASHED_DIR.test(name) && !RESERVED_SUFFIX.test(name)) return name;
  return `h-${sha256(name).slice(0, 40)}`;
}

/**
 * Suffixes a pool gives the entries of a volume (its record, its image): a
 * volume named `x.json` must not land on volume x's record, so such names
 * are hashed too.
 */
const RESERVED_SUFFIX = /\.(json|img)$/;

/** A directory name volumeDirName can produce: a plain component, never one ending in a pool's own suffixes. */
export function isSafeDirName(dir: string): boolean {
  return SAFE_DIR.test(dir) && !RESERVED_SUFFIX.test(dir);
}

/** A node name as it appears in ids: itself when short and plain, else a hash. */
export function encodeNode(node: string): string {
  return PLAIN_NODE.test(node) ? node : `~${sha256(node).slice(0, 16)}`;
}

// ':' separates fields: escape it (and '%') inside server and share.
const esc = (s: string) => s.replace(/%/g, '%25').replace(/:/g, '%3A');
const unesc = (s: string) => s.replace(/%3A/g, ':').replace(/%25/g, '%');

export function formatVolumeId(ref: VolumeRef): string {
  return formatId(ref, ref.kind);
}

/**
 * A snapshot's id: the pool that holds it, as a volume id names it, with
 * the kind field `<kind>-snapshot` (so a snapshot id is never taken for a
 * volume id, nor the reverse), and the snapshot's key in that pool.
 */
export function formatSnapshotId(ref: VolumeRef): string {
  return formatId(ref, `${ref.kind}${SNAPSHOT_SUFFIX}`);
}

const SNAPSHOT_SUFFIX = '-snapshot';

/** A group snapshot's id: its pool, the kind field `group`, and its key (the ref's kind means nothing here). */
export function formatGroupSnapshotId(ref: VolumeRef): string {
  return formatId(ref, GROUP);
}

const GROUP = 'group';

export function parseGroupSnapshotId(id: string): VolumeRef | undefined {
  return parseId(id, (k) => (k === GROUP ? 'share' : undefined));
}

function formatId(ref: VolumeRef, kindField: string): string {
  const where = ref.pool === 'local' ? ref.node : `${esc(ref.server)}${serverSuffix(ref)}:${esc(ref.share)}`;
  const id = `${ref.pool}:${where}:${kindField}:${ref.dirName}`;
  if (Buffer.byteLength(id) > MAX_ID_BYTES) throw new Error(`id would exceed ${MAX_ID_BYTES} bytes: ${id}`);
  return id;
}

/** Parses a volume id; undefined when it is not one of ours or is malformed. */
export function parseVolumeId(id: string): VolumeRef | undefined {
  return parseId(id, (k) => (isKind(k) ? k : undefined));
}

/** Parses a snapshot id (see formatSnapshotId); its ref names the snapshot's key and the source's kind. */
export function parseSnapshotId(id: string): VolumeRef | undefined {
  return parseId(id, (k) => {
    const kind = k.endsWith(SNAPSHOT_SUFFIX) ? k.slice(0, -SNAPSHOT_SUFFIX.length) : '';
    return isKind(kind) ? kind : undefined;
  });
}

function parseId(id: string, kindOf: (field: string) => VolumeKind | undefined): VolumeRef | undefined {
  if (typeof id !== 'string' || Buffer.byteLength(id) > MAX_ID_BYTES) return undefined;
  const parts = id.split(':');
  if (parts[0] === 'nfs') return parseNfsId(parts, kindOf);
  if (parts.length !== 4) return undefined;
  const [pool, node, kindField, dirName] = parts as [string, string, string, string];
  if (pool !== 'local') return undefined;
  if (!PLAIN_NODE.test(node) && !HASHED_NODE.test(node)) return undefined;
  const kind = kindOf(kindField);
  if (!kind) return undefined;
  if (!isSafeDirName(dirName)) return undefined;
  return { pool, node, kind, dirName };
}

const PORT = /^(\d{1,5})?$/;

/** `@nfsPort@mountPort[@uid.gid]` after the server, when any of them is set. */
function serverSuffix(ref: NfsVolumeRef): string {
  const identity = ref.uid !== undefined ? `@${ref.uid}.${ref.gid ?? ref.uid}` : '';
  if (!ref.nfsPort && !ref.mountPort && !identity) return '';
  return `@${ref.nfsPort ?? ''}@${ref.mountPort ?? ''}${identity}`;
}

function parseNfsId(parts: string[], kindOf: (field: string) => VolumeKind | undefined): NfsVolumeRef | undefined {
  if (parts.length !== 5) return undefined;
  const [, serverSpec, share, kindField, dirName] = parts as [string, string, string, string, string];
  const kind = kindOf(kindField);
  const [server, nfsPort = '', mountPort = '', identity, ...rest] = serverSpec.split('@');
  if (!server || rest.length > 0 || !PORT.test(nfsPort) || !PORT.test(mountPort) || Number(nfsPort) > 65535 || Number(mountPort) > 65535)
    return undefined;
  const ids = identity === undefined ? undefined : /^(\d{1,10})\.(\d{1,10})$/.exec(identity);
  if (identity !== undefined && (!ids || Number(ids[1]) > 0xffffffff || Number(ids[2]) > 0xffffffff)) return undefined;
  if (!kind) return undefined;
  if (!isSafeDirName(dirName) || !share) return undefined;
  const ref: NfsVolumeRef = { pool: 'nfs', server: unesc(server), share: unesc(share), kind, dirName };
  // The same checks as a StorageClass's server and share get: an id is a request field too.
  try {
    if (nfsServer(ref.server) !== ref.server || nfsShare(ref.share) !== ref.share) return undefined;
  } catch {
    return undefined;
  }
  if (nfsPort) ref.nfsPort = Number(nfsPort);
  if (mountPort) ref.mountPort = Number(mountPort);
  if (ids) {
    ref.uid = Number(ids[1]);
    ref.gid = Number(ids[2]);
  }
  return ref;
}
