// berth's image, built from the repository's Dockerfile with podman once per
// test run, FROM a STAND-IN base: no registry is reachable from these
// machines, so scripts/image/stand-in-base.sh makes node:20-bookworm-slim's
// stand-in (Debian 12 from debootstrap plus this machine's Node 20) and tags
// it as the Dockerfile's FROM; the Dockerfile builds unchanged with
// --pull=never. podman's settings come from scripts/image/containers.conf.
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export const PODMAN_ENV: NodeJS.ProcessEnv = { ...process.env, CONTAINERS_CONF: path.join(ROOT, 'scripts/image/containers.conf') };

/** podman with the tests' settings; stdout and stderr as text. */
export function podman(args: string[], opts: { timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  return execFileAsync('podman', args, { env: PODMAN_ENV, maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 0 });
}

let built: Promise<{ tag: string; sizeMB: number }> | undefined;

/**
 * Builds the image once per process (scripts/image/build.sh: the stand-in
 * base when not cached, then podman build), passing its progress lines on
 * as they come: a first build takes minutes.
 */
export function berthImage(): Promise<{ tag: string; sizeMB: number }> {
  built ??= (async () => {
    const child = spawn('bash', [path.join(ROOT, 'scripts/image/build.sh')], { env: PODMAN_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderr += `${line}\n`;
      if (/^(stand-in base|image):/.test(line)) console.log(`      ${line}`);
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    if (code !== 0) throw new Error(`building the image failed (exit ${code}):\n${stderr.slice(-6000)}`);
    const tag = stdout.trim().split('\n').at(-1) as string;
    const size = Number((await podman(['image', 'inspect', tag, '--format', '{{.Size}}'])).stdout.trim());
    return { tag, sizeMB: Math.round(size / 1e6) };
  })();
  return built;
}
