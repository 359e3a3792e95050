// `berth-flex install <plugindir>`: copies this executable to
// <plugindir>/berth~nfs/nfs and <plugindir>/berth~block/block atomically (a
// temp name starting with a dot, which the kubelet ignores, then rename), so
// the kubelet's plugin prober never sees a half-written driver.
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
    await fs.copyFile(executable, tmp);
    await fs.chmod(tmp, 0o755);
    const handle = await fs.open(tmp, 'r');
    await handle.sync();
    await handle.close();
    await fs.rename(tmp, path.join(dir, d.file));
    installed.push(path.join(dir, d.file));
  }
  return installed;
}
