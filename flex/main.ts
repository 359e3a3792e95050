// The berth FlexVolume executable. Installed as <plugindir>/berth~nfs/nfs and
// <plugindir>/berth~block/block; which driver it is comes from the name it
// is called by. Every call prints exactly one JSON object on stdout and
// nothing else; exit 0 on Success (and Not supported), 1 on Failure.
//
//   <driver> <command> [args...]        a FlexVolume call from the kubelet
//   berth-flex install <plugindir>      install both drivers atomically
//   berth-flex migrate <file|-> [--mounted-at <path>]
//                                       FlexVolume NFS PVs in, berth CSI PVs out (YAML)
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LinuxHost } from '../host/linux-host.js';
import { BlockDriver } from './block-driver.js';
import { FileLog } from './file-log.js';
import { install } from './install.js';
import { nfsCommand } from './nfs-driver.js';
import { FlexFailure, parseOptions, type Reply } from './protocol.js';

const DEFAULT_LOG = '/var/log/berth-flex.log';
const DEFAULT_STATE = '/var/lib/berth/flex';

/** The path this program was invoked as (the SEA binary, or node's script). */
function invokedAs(): string {
  // In a single executable application argv[1] repeats the executable;
  // under plain Node it is the script. An explicit override wins (tests).
  return process.env.BERTH_FLEX_DRIVER_PATH || process.argv[1] || process.execPath;
}

function driverName(invoked: string): 'nfs' | 'block' | 'berth-flex' {
  const base = path.basename(invoked);
  if (base === 'nfs' || base === 'block') return base;
  return 'berth-flex';
}

function emit(reply: Reply): never {
  process.stdout.write(`${JSON.stringify(reply)}\n`);
  process.exit(reply.status === 'Failure' ? 1 : 0);
}

async function main(): Promise<Reply> {
  const argv = process.argv.slice(2);
  let logFile = process.env.BERTH_FLEX_LOG ?? DEFAULT_LOG;
  if (argv[0]?.startsWith('--log-file=')) logFile = (argv.shift() as string).slice('--log-file='.length);
  const log = new FileLog(logFile || undefined);
  const invoked = invokedAs();
  const driver = driverName(invoked);
  const [command, ...args] = argv;
  const started = Date.now();
  try {
    if (!command) throw new FlexFailure('no command given');
    let reply: Reply;
    if (command === 'install') {
      if (!args[0]) throw new FlexFailure('install needs the kubelet plugin directory');
      const installed = await install(process.execPath, args[0]);
      reply = { status: 'Success', message: `installed ${installed.join(', ')}` };
    } else if (driver === 'nfs') {
      reply = await nfsCommand(new LinuxHost(), command, args, parseOptions);
    } else if (driver === 'block') {
      reply = await new BlockDriver({ stateDir: process.env.BERTH_FLEX_STATE ?? DEFAULT_STATE, host: new LinuxHost() }).run(
        command,
        args,
        parseOptions,
      );
    } else {
      throw new FlexFailure(
        `called as "${path.basename(invoked)}": install me with "berth-flex install <plugindir>" and call me as nfs or block`,
      );
    }
    // Arguments may hold JSON with secrets: the log keeps only the command.
    log.write('info', command, { driver, status: reply.status, ms: Date.now() - started });
    return reply;
  } catch (err) {
    const message = (err as Error).message;
    log.write('error', command ?? '', { driver, message, ms: Date.now() - started });
    return { status: 'Failure', message };
  }
}

/** An operator command, not a kubelet call: plain YAML out, notes on stderr. */
async function migrate(args: string[]): Promise<never> {
  const file = args[0];
  const at = args.indexOf('--mounted-at');
  const mountedAt = at >= 0 ? args[at + 1] : undefined;
  try {
    if (!file) throw new Error('usage: berth-flex migrate <pv-manifests.yaml|-> [--mounted-at <path>]');
    const text =
      file === '-'
        ? await new Promise<string>((resolve) => {
            let buf = '';
            process.stdin.on('data', (c: Buffer) => (buf += c.toString()));
            process.stdin.on('end', () => resolve(buf));
          })
        : readFile(file, 'utf8');
    // Loaded only here: the YAML parser has no business slowing the kubelet's
    // calls. (esbuild bundles this module lazily; a dynamic import of a
    // node: builtin would stay an import(), which a single executable
    // application cannot run.)
    const { migrateFlexPVs } = await import('./migrate.js');
    const result = migrateFlexPVs(await text, { mountedAt });
    process.stdout.write(result.yaml);
    for (const s of result.skipped) process.stderr.write(`# skipped ${s.name}: ${s.reason}\n`);
    process.stderr.write(`# migrated ${result.migrated.length} PersistentVolume(s)\n`);
    process.exit(0);
  } catch (err) {
    process.stderr.write(`berth-flex migrate: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

if (process.argv[2] === 'migrate') void migrate(process.argv.slice(3));
else main().then(emit, (err: unknown) => emit({ status: 'Failure', message: String(err) }));
