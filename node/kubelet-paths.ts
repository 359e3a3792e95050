// Checks on paths the kubelet hands us: absolute, normalised, inside the
// kubelet directory, with no symbolic link anywhere on the way (the path
// itself included), and no component longer than a filesystem allows. So no
// request can make the driver create, mount or delete anywhere else.
import fs from 'node:fs/promises';
import path from 'node:path';
import { isStaleError } from '../host/paths.js';
import { invalid } from '../volume/errors.js';

const MAX_PATH_BYTES = 4096;
/** NAME_MAX of every filesystem a kubelet directory sits on. */
const MAX_COMPONENT_BYTES = 255;

export async function requireKubeletPath(field: string, value: string | undefined, kubeletDir: string): Promise<string> {
  if (!value) throw invalid(`${field} is required`);
  if (Buffer.byteLength(value) > MAX_PATH_BYTES || value.includes('\0')) throw invalid(`${field} is not a valid path`);
  const clean = value.length > 1 ? value.replace(/\/+$/, '') : value;
  if (!path.isAbsolute(clean) || path.normalize(clean) !== clean) throw invalid(`${field} must be an absolute, normalised path: ${value}`);
  if (clean.split('/').some((c) => Buffer.byteLength(c) > MAX_COMPONENT_BYTES)) {
    throw invalid(`${field} has a path component longer than ${MAX_COMPONENT_BYTES} bytes`);
  }
  const root = path.resolve(kubeletDir);
  if (!clean.startsWith(`${root}/`)) throw invalid(`${field} ${value} is outside the kubelet directory ${root}`);
  await requireNoSymlinkBelow(field, value, root, clean);
  return clean;
}

/**
 * Every existing component from `root` down to `p` (the last one included)
 * is a real directory or file, never a symbolic link: a link could point
 * anywhere, and a mount or an unlink would follow it. Components that do not
 * exist yet are created by the driver itself (mkdir never follows a link at
 * the last component, and the ones above were just checked).
 */
async function requireNoSymlinkBelow(field: string, value: string, root: string, p: string): Promise<void> {
  const parts = p.slice(root.length + 1).split('/');
  let at = root;
  for (const part of parts) {
    at = path.join(at, part);
    // readlink, not lstat: at a mount point lstat asks the mounted filesystem
    // for attributes, and a hard NFS mount whose server is down never answers
    // (an unpublish or unstage would hang); readlink answers EINVAL for
    // anything that is not a link without a word to the server.
    try {
      await fs.readlink(at);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EINVAL') continue;
      if (code === 'ENOENT') return;
      if (isStaleError(err)) return; // a stale NFS mount point: a mount, not a link (NodeStage remounts it)
      if (code === 'ENAMETOOLONG') throw invalid(`${field} ${value} is too long for the filesystem`);
      throw err;
    }
    throw invalid(`${field} ${value} goes through a symbolic link (${at}); refusing to follow it`);
  }
}

/**
 * `p` (a directory an operator pre-mounted an NFS export under, joined with
 * a checked subDir) resolves inside one of `allowed`. Returns the resolved
 * path; INVALID_ARGUMENT when it is outside all of them, or when none are set.
 */
export async function requireAllowedMountedAt(p: string, allowed: readonly string[]): Promise<string> {
  const inside = (real: string, dir: string) => real === dir || real.startsWith(`${dir}/`);
  if (!allowed.some((dir) => inside(path.resolve(p), dir))) {
    throw invalid(
      `mountedAt ${p} is not under a directory this node allows pre-mounted exports in (--mounted-at-dirs: ${allowed.join(', ') || 'none'})`,
    );
  }
  const real = await fs.realpath(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return path.resolve(p); // reported as missing by the caller
    throw err;
  });
  const realAllowed = await Promise.all(allowed.map((d) => fs.realpath(d).catch(() => d)));
  if (!realAllowed.some((dir) => inside(real, dir)))
    throw invalid(`mountedAt ${p} resolves outside the directories this node allows (${real})`);
  return real;
}
