#!/usr/bin/env node
// berth-ctl: an operator's command line for a running driver's socket. Lists,
// creates (also from a snapshot or a volume), deletes and attaches volumes,
// snapshots them, stages and publishes one into a directory on this machine
// (kubelet-style paths), shows its stats, and prints the driver's status
// report (pools, NFS servers, abnormal volumes).
import fs from 'node:fs/promises';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { DEFAULT_DRIVER_NAME, DEFAULT_ENDPOINT, parseListenAddress, socketPath } from '../driver/flags.js';
import type { DriverReport } from '../driver/metrics.js';
import { parseQuantity } from '../volume/quantity.js';
import { decodeVolumeContext } from '../volume/volume-context.js';
import { parseVolumeId } from '../volume/volume-id.js';
import { csiClients, rpc } from './client.js';
import { stagingPath, targetPath } from './kubelet-layout.js';
import { formatStatus } from './status-table.js';

const USAGE = `Usage: berth-ctl [--endpoint unix:///path/csi.sock] <command> [args]

Commands:
  info                                  plugin name, version, capabilities, node
  list                                  volumes, their capacity and nodes
  create <name> [--kind share|block] [--size 1Gi] [--fs ext4|xfs|btrfs] [--raw] [--param k=v]...
         [--from-snapshot <snapshot-id> | --from-volume <volume-id>]
  delete <volume-id>
  snapshot <volume-id> <name> [--param k=v]...   CreateSnapshot
  snapshots [--volume <volume-id>]      snapshots, their size and readiness
  delete-snapshot <snapshot-id>
  attach <volume-id> [--node <id>]      ControllerPublishVolume (default: the driver's node)
  detach <volume-id> [--node <id>]      ControllerUnpublishVolume
  mount <volume-id> [--pod <name>] [--readonly] [--raw] [--kubelet-dir /var/lib/kubelet]
                                        NodeStage + NodePublish; prints the mounted path
  unmount <volume-id> [--pod <name>] [--raw] [--kubelet-dir /var/lib/kubelet]
                                        NodeUnpublish, and NodeUnstage when no pod uses it
  stats <volume-id> <path>              NodeGetVolumeStats
  status [--address 127.0.0.1:9810] [--json]
                                        pools, capacity, NFS servers, abnormal volumes, read from
                                        the driver's --metrics-address (its /status report)

--endpoint defaults to $CSI_ENDPOINT, else ${DEFAULT_ENDPOINT}.`;

interface Args {
  positional: string[];
  options: Map<string, string[]>;
}

/** The options each command takes (besides --endpoint and --help). */
const COMMAND_OPTIONS: Record<string, string[]> = {
  info: [],
  list: [],
  create: ['kind', 'size', 'fs', 'raw', 'param', 'from-snapshot', 'from-volume'],
  delete: [],
  snapshot: ['param'],
  snapshots: ['volume'],
  'delete-snapshot': [],
  attach: ['node'],
  detach: ['node'],
  mount: ['pod', 'readonly', 'raw', 'kubelet-dir'],
  unmount: ['pod', 'raw', 'kubelet-dir'],
  stats: [],
  status: ['address', 'json'],
};

class UsageError extends Error {}

function parseArgs(argv: string[]): Args {
  const positional: string[] = [];
  const options = new Map<string, string[]>();
  const bools = new Set(['readonly', 'raw', 'help', 'json']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) {
      positional.push(a);
      continue;
    }
    const name = m[1] as string;
    const value = m[2] ?? (bools.has(name) ? 'true' : argv[++i]);
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    options.set(name, [...(options.get(name) ?? []), value]);
  }
  return { positional, options };
}

const one = (a: Args, name: string, fallback = '') => a.options.get(name)?.at(-1) ?? fallback;
const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

interface SnapshotInfo {
  snapshot: { snapshot_id: string; source_volume_id: string; size_bytes: string; ready_to_use: boolean };
}

/** Every entry of a paged list call (ListVolumes, ListSnapshots), page after page. */
async function allPages<E>(client: grpc.Client, method: string, req: object): Promise<E[]> {
  const out: E[] = [];
  let token = '';
  do {
    const page = await rpc<{ entries: E[]; next_token: string }>(client, method, { ...req, max_entries: 100, starting_token: token });
    out.push(...page.entries);
    token = page.next_token;
  } while (token);
  return out;
}

const printTable = (header: string, rows: string[]) => process.stdout.write(`${[header, ...rows].join('\n')}\n`);

/** The --param key=value options, as a map. */
function keyValues(a: Args): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of a.options.get('param') ?? []) {
    const i = kv.indexOf('=');
    if (i < 1) throw new Error(`--param takes key=value, got "${kv}"`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

interface VolumeInfo {
  volume: { volume_id: string; capacity_bytes: string; volume_context: Record<string, string> };
  status: { published_node_ids: string[] };
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const [command, ...rest] = args.positional;
  if (args.options.has('help')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!command) throw new UsageError('no command given');
  const allowed = COMMAND_OPTIONS[command];
  if (!allowed) throw new UsageError(`unknown command "${command}"`);
  for (const name of args.options.keys()) {
    if (name !== 'endpoint' && !allowed.includes(name)) throw new UsageError(`${command} takes no option --${name}`);
  }
  if (command === 'status') return status(one(args, 'address', DEFAULT_METRICS_ADDRESS), one(args, 'json') === 'true');
  const socket = socketPath(one(args, 'endpoint', process.env.CSI_ENDPOINT || DEFAULT_ENDPOINT));
  const c = csiClients(socket);
  try {
    const nodeId = async () => one(args, 'node') || (await rpc<{ node_id: string }>(c.node, 'NodeGetInfo')).node_id;
    const driverName = async () => (await rpc<{ name: string }>(c.identity, 'GetPluginInfo')).name || DEFAULT_DRIVER_NAME;
    const need = (n: number, what: string) => {
      if (rest.length < n) throw new UsageError(`${command} needs ${what}`);
      return rest;
    };
    switch (command) {
      case 'info': {
        const info = await rpc(c.identity, 'GetPluginInfo');
        const plugin = await rpc(c.identity, 'GetPluginCapabilities');
        const node = await rpc(c.node, 'NodeGetInfo').catch(() => null);
        print({ info, plugin, node });
        return 0;
      }
      case 'list': {
        const entries = await allPages<VolumeInfo>(c.controller, 'ListVolumes', {});
        const rows = entries.map(
          (e) =>
            `${e.volume.volume_id.padEnd(48)} ${e.volume.capacity_bytes.padStart(14)}  ${e.status.published_node_ids.join(',') || '-'}`,
        );
        printTable(`${'VOLUME ID'.padEnd(48)} ${'BYTES'.padStart(14)}  PUBLISHED TO`, rows);
        return 0;
      }
      case 'create': {
        const [name] = need(1, 'a name');
        const kind = one(args, 'kind', 'share');
        const raw = one(args, 'raw') === 'true';
        const mode = kind === 'share' ? 'MULTI_NODE_MULTI_WRITER' : 'SINGLE_NODE_WRITER';
        const cap = raw
          ? { block: {}, access_mode: { mode } }
          : { mount: { fs_type: kind === 'block' ? one(args, 'fs', 'ext4') : '' }, access_mode: { mode } };
        const parameters: Record<string, string> = { kind, ...keyValues(args) };
        const size = args.options.has('size') ? parseQuantity(one(args, 'size')) : 0;
        const fromSnapshot = one(args, 'from-snapshot');
        const fromVolume = one(args, 'from-volume');
        if (fromSnapshot && fromVolume) throw new UsageError('create takes --from-snapshot or --from-volume, not both');
        const res = await rpc(c.controller, 'CreateVolume', {
          name,
          capacity_range: size ? { required_bytes: size } : null,
          volume_capabilities: [cap],
          parameters,
          volume_content_source: fromSnapshot
            ? { snapshot: { snapshot_id: fromSnapshot } }
            : fromVolume
              ? { volume: { volume_id: fromVolume } }
              : null,
        });
        print(res);
        return 0;
      }
      case 'snapshot': {
        const [volumeId, name] = need(2, 'a volume id and a snapshot name');
        print(await rpc(c.controller, 'CreateSnapshot', { source_volume_id: volumeId, name, parameters: keyValues(args) }));
        return 0;
      }
      case 'snapshots': {
        const entries = await allPages<SnapshotInfo>(c.controller, 'ListSnapshots', { source_volume_id: one(args, 'volume') });
        const rows = entries.map(
          ({ snapshot: x }) =>
            `${x.snapshot_id.padEnd(56)} ${x.size_bytes.padStart(14)}  ${(x.ready_to_use ? 'yes' : 'no').padEnd(5)}  ${x.source_volume_id}`,
        );
        printTable(`${'SNAPSHOT ID'.padEnd(56)} ${'BYTES'.padStart(14)}  READY  SOURCE`, rows);
        return 0;
      }
      case 'delete-snapshot':
        await rpc(c.controller, 'DeleteSnapshot', { snapshot_id: need(1, 'a snapshot id')[0] });
        return 0;
      case 'delete':
        await rpc(c.controller, 'DeleteVolume', { volume_id: need(1, 'a volume id')[0] });
        return 0;
      case 'attach':
      case 'detach': {
        const [id] = need(1, 'a volume id');
        const node = await nodeId();
        if (command === 'detach') {
          await rpc(c.controller, 'ControllerUnpublishVolume', { volume_id: id, node_id: node });
          return 0;
        }
        await rpc<VolumeInfo>(c.controller, 'ControllerGetVolume', { volume_id: id }); // NOT_FOUND before anything is asked
        const mode = parseVolumeId(id)?.kind === 'share' ? 'MULTI_NODE_MULTI_WRITER' : 'SINGLE_NODE_WRITER';
        print(
          await rpc(c.controller, 'ControllerPublishVolume', {
            volume_id: id,
            node_id: node,
            volume_capability: { mount: {}, access_mode: { mode } },
          }),
        );
        return 0;
      }
      case 'mount':
      case 'unmount': {
        const [id] = need(1, 'a volume id');
        const raw = one(args, 'raw') === 'true';
        const kubeletDir = one(args, 'kubelet-dir', '/var/lib/kubelet');
        const pod = one(args, 'pod', 'berth-ctl');
        const pv = id.replace(/[^A-Za-z0-9.-]/g, '-');
        const staging = stagingPath(kubeletDir, await driverName(), id, raw, pv);
        const target = targetPath(kubeletDir, pod, pv, raw);
        if (command === 'unmount') {
          await rpc(c.node, 'NodeUnpublishVolume', { volume_id: id, target_path: target });
          const podsLeft = raw ? await fs.readdir(path.dirname(target)).catch(() => []) : [];
          if (podsLeft.length === 0) await rpc(c.node, 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
          return 0;
        }
        const { volume } = await rpc<VolumeInfo>(c.controller, 'ControllerGetVolume', { volume_id: id }).catch(() => ({
          volume: { volume_context: {} as Record<string, string> },
        }));
        const ref = parseVolumeId(id);
        const mode = ref?.kind === 'block' ? 'SINGLE_NODE_WRITER' : 'MULTI_NODE_MULTI_WRITER';
        const fsType = (ref && decodeVolumeContext(volume.volume_context, ref)?.fsType) ?? '';
        const cap = raw ? { block: {}, access_mode: { mode } } : { mount: { fs_type: fsType }, access_mode: { mode } };
        // The kubelet's part: the directories it makes. What this call made is removed again if the
        // volume cannot be staged or published, so a failed mount leaves nothing below the kubelet directory.
        const made: Array<{ top: string; deepest: string }> = [];
        for (const dir of [staging, path.dirname(target)]) {
          const top = await fs.mkdir(dir, { recursive: true, mode: 0o750 });
          if (top) made.push({ top, deepest: dir });
        }
        try {
          await rpc(c.node, 'NodeStageVolume', {
            volume_id: id,
            staging_target_path: staging,
            volume_capability: cap,
            volume_context: volume.volume_context,
          });
          await rpc(c.node, 'NodePublishVolume', {
            volume_id: id,
            staging_target_path: staging,
            target_path: target,
            volume_capability: cap,
            readonly: one(args, 'readonly') === 'true',
            volume_context: volume.volume_context,
          });
        } catch (err) {
          await removeEmptyDirs(made);
          throw err;
        }
        process.stdout.write(`${target}\n`);
        return 0;
      }
      case 'stats': {
        const [id, p] = need(2, 'a volume id and a path');
        print(await rpc(c.node, 'NodeGetVolumeStats', { volume_id: id, volume_path: p }));
        return 0;
      }
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    throw err instanceof UsageError ? err : readable(err as Error, socket);
  } finally {
    c.close();
  }
}

/** The address the chart serves metrics on, and the one to pass to `npm start -- --metrics-address`. */
const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9810';

/** Reads the driver's /status report over HTTP and prints it as tables (or as it came, with --json). */
async function status(address: string, json: boolean): Promise<number> {
  const { host, port } = parseListenAddress(address, '--address');
  const url = `http://${host?.includes(':') ? `[${host}]` : (host ?? '127.0.0.1')}:${port}/status`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  } catch (err) {
    throw new Error(`no driver serves ${url} (${(err as Error).message}): start it with --metrics-address ${address}, or pass --address`);
  }
  if (!res.ok) throw new Error(`${url}: ${res.status} ${(await res.text()).trim()}`);
  const report = (await res.json()) as DriverReport;
  process.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
  return 0;
}

/** What the user reads when a call fails: the driver's own message, or why there is no driver to ask. */
function readable(err: Error & { details?: string; code?: number }, socket: string): Error {
  if (err.code === grpcStatus.UNAVAILABLE && /No connection established|ENOENT|ECONNREFUSED/.test(err.details ?? '')) {
    return new Error(`no driver answers on unix://${socket}: start one (npm start) or pass --endpoint`);
  }
  return new Error(err.details ?? err.message);
}

if (process.argv[1] && import.meta.url === `file://${path.resolve(process.argv[1])}`) {
  const argv = process.argv.slice(2);
  main(argv).then(
    (code) => process.exit(code),
    (err: Error) => {
      if (err instanceof UsageError) {
        process.stderr.write(`berth-ctl: ${err.message}\n\n${USAGE}\n`);
        process.exit(2);
      }
      process.stderr.write(`berth-ctl: ${err.message}\n`);
      process.exit(1);
    },
  );
}

/**
 * Removes the directories `mkdir -p` made (each call returns the first one it
 * made), deepest first, while they are empty: never contents, never a mount.
 */
async function removeEmptyDirs(made: Array<{ top: string; deepest: string }>): Promise<void> {
  for (const { top, deepest } of made.reverse()) {
    for (let dir = deepest; dir.startsWith(top); dir = path.dirname(dir)) {
      if (
        !(await fs.rmdir(dir).then(
          () => true,
          () => false,
        ))
      )
        break;
      if (dir === top) break;
    }
  }
}
