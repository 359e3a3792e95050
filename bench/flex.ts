// bench/flex: wall time of the installed single executable as the kubelet
// runs it: `init` (median of 20, target ≤ 50 ms), beside the same Node
// binary starting with nothing to do (the floor), and a berth/block cycle
// waitforattach → mountdevice → unmountdevice on a 1 GiB ext4 image (median
// of 20; the first cycle, which formats, reported apart). Needs
// dist/berth-flex (npm run build:flex) and root; run in a private mount
// namespace (npm run bench:flex does).
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { fmt, median } from './stats.js';

const exec = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RUNS = 20;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function main() {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-flex-bench-'));
  try {
    await exec(path.join(ROOT, 'dist/berth-flex'), ['install', path.join(dir, 'exec')]);
    const block = path.join(dir, 'exec/berth~block/block');
    const nfs = path.join(dir, 'exec/berth~nfs/nfs');
    // The kubelet's environment, not this shell's: in particular no
    // NODE_EXTRA_CA_CERTS or NODE_OPTIONS, which make every Node start parse
    // a certificate bundle or load more (measured here: +55 ms a start).
    const env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      BERTH_FLEX_LOG: path.join(dir, 'flex.log'),
      BERTH_FLEX_STATE: path.join(dir, 'state'),
    };
    const call = async (exe: string, args: string[]) => {
      const { stdout } = await exec(exe, args, { env });
      const reply = JSON.parse(stdout) as { status: string; device?: string; message?: string };
      if (reply.status !== 'Success') throw new Error(`${args[0]}: ${reply.message}`);
      return reply;
    };
    const inits: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      // Interleaved, so both see the same machine.
      inits.push(await timed(() => call(nfs, ['init'])));
      bare.push(await timed(() => exec(process.execPath, ['-e', ''], { env })));
    }

    const pool = path.join(dir, 'pool');
    await fs.mkdir(pool);
    const opts = JSON.stringify({
      'kubernetes.io/fsType': 'ext4',
      'kubernetes.io/readwrite': 'rw',
      'kubernetes.io/pvOrVolumeName': 'bench',
      pool,
      image: 'bench',
      size: '1Gi',
    });
    const dmp = path.join(dir, 'kubelet/plugins/kubernetes.io/flexvolume/berth/block/mounts/bench');
    await fs.mkdir(dmp, { recursive: true });
    const cycle = async () => {
      const { device } = await call(block, ['waitforattach', '', opts]);
      await call(block, ['mountdevice', dmp, device as string, opts]);
      await call(block, ['unmountdevice', dmp]);
    };
    const first = await timed(cycle);
    const cycles: number[] = [];
    for (let i = 0; i < RUNS; i++) cycles.push(await timed(cycle));
    console.log(`bench/flex: the installed single executable (${fmt((await fs.stat(block)).size / 1e6, 0)} MB), median of ${RUNS}`);
    console.log(`init                                                  ${fmt(median(inits)).padStart(7)} ms  (target <= 50 ms)`);
    console.log(
      `node -e '' (the same Node binary doing nothing)       ${fmt(median(bare)).padStart(7)} ms  (init / bare start: ${fmt(median(inits) / median(bare), 2)})`,
    );
    console.log(
      `waitforattach+mountdevice+unmountdevice, 1 GiB ext4   ${fmt(median(cycles)).padStart(7)} ms  (first cycle, with mkfs: ${fmt(first)} ms)`,
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
