// The one validator of NFS inputs: server, share, subDir, mountOptions and
// mountedAt, wherever they arrive (StorageClass parameters, a volume id, a
// volume_context on the node, FlexVolume options, a PV being migrated).
// Everything that reaches a `mount` argv or an NFS path passes through here,
// so a value the controller accepts is one the node accepts too.
//
// Messages never repeat a mount option's value: options may carry
// credentials (e.g. `password=`), like mount flags and secrets.
import { invalid } from './errors.js';

/** The block image's name inside an NFS volume's directory (controller and node). */
export const NFS_IMAGE = 'disk.img';
/** The node's filesystem record of an NFS block volume, beside its image. */
export const NFS_FILESYSTEM_RECORD = 'filesystem.json';
/** berth's own directory on an export (records); never a volume's subDir. */
export const NFS_RECORDS_DIR = '.berth';

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6 = /^\[?[0-9A-Fa-f:.]{2,45}\]?$/;
const COMPONENT = /^[A-Za-z0-9_.-]{1,255}$/;
const MOUNT_OPTION = /^[A-Za-z0-9_.=:/@+-]+$/;

/** A host name, an IPv4 address or an IPv6 address (bracketed or not). */
export function nfsServer(value: string | undefined, field = 'server'): string {
  const v = value ?? '';
  const bracketed = v.startsWith('[') || v.endsWith(']');
  const ok = HOST_NAME.test(v) || (IPV6.test(v) && v.includes(':') && (!bracketed || (v.startsWith('[') && v.endsWith(']'))));
  if (!ok) throw invalid(`${field} must be a host name or an IP address; got "${v}"`);
  return v;
}

/** Plain path components: no "", ".", "..", NUL or anything outside [A-Za-z0-9_.-]. */
function plainComponents(path: string): boolean {
  return path.split('/').every((c) => c !== '.' && c !== '..' && COMPONENT.test(c));
}

/** The export's absolute path, without a trailing slash ("/" for the root). */
export function nfsShare(value: string | undefined, field = 'share'): string {
  const v = (value ?? '').replace(/\/+$/, '') || (value?.startsWith('/') ? '/' : '');
  if (v === '/') return v;
  if (!v.startsWith('/') || Buffer.byteLength(v) > 1024 || !plainComponents(v.slice(1))) {
    throw invalid(`${field} must be the export's absolute path, of plain components (no "..", ".", or "//"); got "${value ?? ''}"`);
  }
  return v;
}

/**
 * A volume's directory on the export, relative to the share: plain
 * components, at most 1024 bytes, never inside berth's own `.berth`.
 * `allowRoot` accepts "" (the whole export: static shares from FlexVolume).
 */
export function nfsSubDir(value: string | undefined, opts: { allowRoot?: boolean; field?: string } = {}): string {
  const field = opts.field ?? 'subDir';
  const v = value ?? '';
  if (v === '' && opts.allowRoot) return v;
  if (v === '' || Buffer.byteLength(v) > 1024 || !plainComponents(v)) {
    throw invalid(`${field} "${v}" must be a relative path of plain components (no leading "/", "..", "." or "//")`);
  }
  if (v.split('/')[0] === NFS_RECORDS_DIR) throw invalid(`${field} may not start with ${NFS_RECORDS_DIR} (berth keeps its records there)`);
  return v;
}

/**
 * Mount options from a comma-separated string or a list whose entries may
 * hold several (CSI mount_flags): trimmed, empty ones dropped, each a plain
 * option. Options travel as one argv element, never through a shell; this
 * keeps them from smuggling anything.
 */
export function mountOptions(value: string | readonly string[] | undefined, field = 'mount option'): string[] {
  const entries = typeof value === 'string' ? [value] : (value ?? []);
  const out = entries
    .flatMap((e) => e.split(','))
    .map((o) => o.trim())
    .filter(Boolean);
  const bad = out.findIndex((o) => !MOUNT_OPTION.test(o));
  if (bad >= 0) throw invalid(`${field} number ${bad + 1} holds a character that is not allowed in a mount option`);
  return out;
}

/** Options that set one thing under two spellings, or its two opposite values. */
const SAME_SETTING: Record<string, string> = { nfsvers: 'vers', soft: 'hard', rw: 'ro', async: 'sync', softerr: 'hard' };

/** The setting an option sets: `vers=4.1` and `nfsvers=3` set `vers`; `nolock` and `lock` set `lock`; `soft` and `hard` set `hard`. */
function settingOf(option: string): string {
  const name = option.split('=')[0].toLowerCase();
  const positive = !option.includes('=') && name.startsWith('no') && name.length > 2 ? name.slice(2) : name;
  return SAME_SETTING[positive] ?? positive;
}

/**
 * Mount options from layers, later layers winning: an option of a later layer
 * replaces every earlier option that sets the same thing (so `nfsvers=4.1`
 * after `vers=3` leaves only `nfsvers=4.1`, and `soft` after `hard` only
 * `soft`), rather than leaving both for mount.nfs to resolve by position.
 */
export function layeredMountOptions(...layers: ReadonlyArray<readonly string[]>): string[] {
  const out: string[] = [];
  for (const layer of layers) {
    const settings = new Set(layer.map(settingOf));
    const kept = out.filter((o) => !settings.has(settingOf(o)));
    out.splice(0, out.length, ...kept, ...layer.filter((o, i) => layer.indexOf(o) === i));
  }
  return out;
}

/** Where every node already has the export mounted: absolute and normalised. */
export function mountedAt(value: string | undefined, field = 'mountedAt'): string | undefined {
  if (value === undefined || value === '') return undefined;
  const v = value.replace(/\/+$/, '');
  if (!v.startsWith('/') || !plainComponents(v.slice(1))) throw invalid(`${field} must be an absolute, normalised path; got "${value}"`);
  return v;
}

/** Where an NFS pool is, and who berth is there: the export, its ports, its AUTH_SYS identity. */
export interface NfsLocation {
  server: string;
  /**
   * The export's path on the server (/srv/nfs). Named `share` as the
   * StorageClass parameter and csi-driver-nfs name it; it is not the share
   * kind of volume (a directory), which lives inside it.
   */
  share: string;
  nfsPort?: number;
  mountPort?: number;
  /** The AUTH_SYS identity berth acts as on the export (default root); on a root_squash export, its owner's. */
  uid?: number;
  gid?: number;
}

/** Where a volume's bytes are on an NFS export, checked. */
export interface NfsVolumeSource {
  server: string;
  share: string;
  subDir: string;
  mountOptions: string[];
  mountedAt?: string;
}

/** The whole set at once, as a volume_context (or FlexVolume options) carries it. */
export function nfsVolumeSource(
  fields: { server?: string; share?: string; subDir?: string; mountOptions?: string; mountedAt?: string },
  opts: { allowRoot?: boolean } = {},
): NfsVolumeSource {
  const source: NfsVolumeSource = {
    server: nfsServer(fields.server),
    share: nfsShare(fields.share),
    subDir: nfsSubDir(fields.subDir, { allowRoot: opts.allowRoot }),
    mountOptions: mountOptions(fields.mountOptions),
  };
  const at = mountedAt(fields.mountedAt);
  if (at !== undefined) source.mountedAt = at;
  return source;
}

/** The `mount -t nfs` device: server:/share[/subDir], with IPv6 servers bracketed. */
export function nfsDevice(server: string, share: string, subDir = ''): string {
  const host = server.includes(':') && !server.startsWith('[') ? `[${server}]` : server;
  const where = subDir ? `${share === '/' ? '' : share}/${subDir}` : share;
  return `${host}:${where}`;
}
