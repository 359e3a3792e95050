// MOUNT v3 (RFC 1813 appendix I): MNT, UMNT, EXPORT.
import { MountError } from './errors.js';
import type { RpcClient } from './rpc.js';
import { XdrWriter } from './xdr.js';

export const MOUNT_PROG = 100005;
const MOUNT_VERS = 3;
const MNTPATHLEN = 1024;
const FHSIZE3 = 64;

export interface ExportEntry {
  dir: string;
  groups: string[];
}

export class Mount3 {
  constructor(private readonly rpc: RpcClient) {}

  /** MNT: the root file handle of an export. */
  async mnt(exportPath: string): Promise<{ fh: Buffer; authFlavors: number[] }> {
    const r = await this.rpc.call(MOUNT_PROG, MOUNT_VERS, 1, new XdrWriter().string(exportPath).toBuffer(), 'MOUNT MNT');
    const status = r.uint32();
    if (status !== 0) throw new MountError(status, exportPath);
    const fh = r.opaque(FHSIZE3);
    const n = r.uint32();
    if (n > 64) throw new MountError(10006, exportPath);
    const authFlavors = Array.from({ length: n }, () => r.uint32());
    return { fh, authFlavors };
  }

  async umnt(exportPath: string): Promise<void> {
    await this.rpc.call(MOUNT_PROG, MOUNT_VERS, 3, new XdrWriter().string(exportPath).toBuffer(), 'MOUNT UMNT');
  }

  async exports(): Promise<ExportEntry[]> {
    const r = await this.rpc.call(MOUNT_PROG, MOUNT_VERS, 5, Buffer.alloc(0), 'MOUNT EXPORT');
    const out: ExportEntry[] = [];
    while (r.bool()) {
      const dir = r.string(MNTPATHLEN);
      const groups: string[] = [];
      while (r.bool()) groups.push(r.string(255));
      out.push({ dir, groups });
      if (out.length > 10_000) break;
    }
    return out;
  }
}
