// `berth-flex install <plugindir>`: places this executable (about 100 MB)
// once, at <plugindir>/berth~nfs/nfs, and the block driver as a hard link
// to it, <plugindir>/berth~block/block: one copy on the node. Each is put in
// place atomically (a temp name starting with a dot, which the kubelet
// ignores, then rename), so the kubelet's plugin prober never sees a
// half-written driver. A hard link, not a symbolic one: the executable
// tells which driver it is by the name it was run as, and a symbolic link
// would be run as its target's name.
import fs from 'node:fs/promises';
import path from 'node:path';

export const DRIVERS = [
  { vendorDir: 'berth~nfs', file: 'nfs' },
  { vendorDir: 'berth~block', file: 'block' },
];

export async function install(executable: string, pluginDir: string): Promise<string[]> {
  const installed: string[] = [];
  for (const d of DRIVERS) {
    const dir = path.join(pluginDir, d.vendorDir);
    await fs.mkdir(dir, { recursive: true, mode: 0o755 });
    const tmp = path.join(dir, `.${d.file}.${process.pid}`);
    await fs.rm(tmp, { force: true });
    const first = installed[0];
    if (first) await fs.link(first, tmp);
    else {
      await fs.copyFile(executable, tmp);
      await fs.chmod(tmp, 0o755);
      const handle = await fs.open(tmp, 'r');
      await handle.sync();
      await handle.close();
    }
    await fs.rename(tmp, path.join(dir, d.file));
    installed.push(path.join(dir, d.file));
  }
  return installed;
}
