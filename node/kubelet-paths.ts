// Checks on paths the kubelet hands us: absolute, normalised, inside the
// kubelet directory (also after resolving symlinks), so no request can make
// the driver mount or delete anywhere else.
import fs from 'node:fs/promises';
import path from 'node:path';
import { invalid } from '../volume/errors.js';

const MAX_PATH_BYTES = 4096;

export async function requireKubeletPath(field: string, value: string | undefined, kubeletDir: string): Promise<string> {
  if (!value) throw invalid(`${field} is required`);
  if (Buffer.byteLength(value) > MAX_PATH_BYTES || value.includes('\0')) throw invalid(`${field} is not a valid path`);
  const clean = value.length > 1 ? value.replace(/\/+$/, '') : value;
  if (!path.isAbsolute(clean) || path.normalize(clean) !== clean) throw invalid(`${field} must be an absolute, normalised path: ${value}`);
  const root = path.resolve(kubeletDir);
  if (!clean.startsWith(`${root}/`)) throw invalid(`${field} ${value} is outside the kubelet directory ${root}`);
  // The deepest existing ancestor must resolve inside the kubelet directory.
  let probe = path.dirname(clean);
  for (;;) {
    try {
      const real = await fs.realpath(probe);
      const realRoot = await fs.realpath(root).catch(() => root);
      if (real !== realRoot && !real.startsWith(`${realRoot}/`)) throw invalid(`${field} ${value} resolves outside the kubelet directory`);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || probe === root || probe === '/') {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
        throw err;
      }
      probe = path.dirname(probe);
    }
  }
  return clean;
}
