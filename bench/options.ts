// Command-line options the benches share: --name value flags, and the pool
// filesystem (--pool-fs), made fresh on a loop device for each run.
import { FreshFilesystem } from '../test/helpers/fresh-fs.js';

export function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** --pool-fs: ext4 with a journal (what a node's disk has; the default), xfs, or ext4-nojournal (as this machine's /). */
export function poolFilesystem(): { make: (mountpoint?: string) => Promise<FreshFilesystem>; description: string } {
  const kind = option('pool-fs') ?? 'ext4';
  if (!['ext4', 'xfs', 'ext4-nojournal'].includes(kind)) throw new Error('--pool-fs is ext4, xfs or ext4-nojournal');
  return {
    make: (mountpoint?: string) => FreshFilesystem.make(mountpoint, { fsType: kind === 'xfs' ? 'xfs' : 'ext4', journal: kind === 'ext4' }),
    description: { ext4: 'a fresh journaled ext4', xfs: 'a fresh xfs', 'ext4-nojournal': FreshFilesystem.description }[kind] as string,
  };
}
