// What an operator reads off a running driver, in one place: Prometheus
// metrics on /metrics (prom-client, the text format) and the same facts as a
// JSON report on /status (what `berth-ctl status` prints), both served on
// --metrics-address. Per-call latency is observed as calls finish; the pools,
// NFS servers and node volumes are read when scraped, so nothing is counted
// on the create path but one histogram observation.
import http from 'node:http';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { NfsServerHealth } from '../controller/nfs-pools.js';
import { type PoolReport, within } from '../controller/pool-usage.js';
import { ABNORMAL_REASONS, type NodeStatus } from '../node/node-service.js';
import { Code } from '../volume/errors.js';
import { VOLUME_KINDS } from '../volume/volume-id.js';
import { parseListenAddress } from './flags.js';

/** The JSON on /status. */
export interface DriverReport {
  driver: string;
  version: string;
  mode: string;
  nodeId: string;
  /** When it was read (ISO 8601). */
  at: string;
  pools: PoolReport[];
  nfsServers: NfsServerHealth[];
  /** Node and all-in-one modes: what this node has staged and published. */
  node?: NodeStatus;
  /** Why the node's part is missing (its volumes could not be checked in time). */
  nodeError?: string;
}

/** Where the report's parts come from; a part a mode does not serve is absent. */
export interface ReportSources {
  pools?: (timeoutMs: number) => Promise<PoolReport[]>;
  nfsServers?: (timeoutMs: number) => Promise<NfsServerHealth[]>;
  node?: () => Promise<NodeStatus>;
}

/** How long a scrape waits for one NFS server's answer before calling it unreachable. */
const NFS_PROBE_TIMEOUT_MS = 2_000;
/**
 * How long a scrape waits for a pool's scan or the node's checks (a hung disk
 * or NFS mount blocks them in the kernel): under Prometheus' default 10 s
 * scrape timeout, so the rest of the report still arrives.
 */
const SCAN_TIMEOUT_MS = 5_000;

/** csi-lib-utils' buckets for csi_plugin_operations_seconds, with finer ones below 100 ms (berth's calls take milliseconds). */
const OPERATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 25, 50, 120, 300, 600];
const NFS_RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** gRPC's code names as Go spells them (codes.Code.String()), which csi-lib-utils puts in grpc_status_code. */
export function grpcCodeName(code: number): string {
  if (code === Code.OK) return 'OK';
  if (code === Code.CANCELLED) return 'Canceled';
  const name = Code[code];
  if (name === undefined) return `Code(${code})`;
  return name
    .toLowerCase()
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}

export class DriverMetrics {
  readonly registry = new Registry();
  private readonly operations: Histogram<'driver_name' | 'method_name' | 'grpc_status_code'>;
  private readonly nfsRpc: Histogram<'server' | 'procedure' | 'result'>;
  private readonly gauges;
  private refreshing: Promise<DriverReport> | undefined;

  constructor(
    private readonly identity: { driver: string; version: string; mode: string; nodeId: string },
    private readonly sources: ReportSources,
    private readonly scanTimeoutMs = SCAN_TIMEOUT_MS,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.operations = new Histogram({
      name: 'csi_plugin_operations_seconds',
      help: 'Container Storage Interface operation duration with gRPC error code status total',
      labelNames: ['driver_name', 'method_name', 'grpc_status_code'],
      buckets: OPERATION_BUCKETS,
      registers,
    });
    this.nfsRpc = new Histogram({
      name: 'berth_nfs_rpc_seconds',
      help: "Duration of the controller's NFS and MOUNT RPCs, by server and procedure; result no_reply: refused, reset or timed out",
      labelNames: ['server', 'procedure', 'result'],
      buckets: NFS_RPC_BUCKETS,
      registers,
    });
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new Gauge<L>({ name, help, labelNames: [...labelNames], registers });
    const pool = ['pool', 'type'] as const;
    const kind = ['pool', 'type', 'kind'] as const;
    this.gauges = {
      info: gauge('berth_info', 'Always 1: the driver, its version and mode', ['driver_name', 'version', 'mode', 'node']),
      poolUp: gauge('berth_pool_up', '1 when the pool could be read at this scrape, 0 when not', pool),
      size: gauge('berth_pool_size_bytes', "Size of the pool's filesystem (an NFS export: what the server reports)", pool),
      free: gauge('berth_pool_free_bytes', 'Bytes free for new data in the pool (what an unprivileged writer may use)', pool),
      volumes: gauge('berth_pool_volumes', 'Volumes in the pool, by kind', kind),
      provisioned: gauge('berth_pool_provisioned_bytes', "Sum of the volumes' capacities: what the pool has promised them, by kind", kind),
      allocated: gauge(
        'berth_pool_allocated_bytes',
        "Bytes the volumes' data takes on disk, by kind (absent for shares on NFS: it would take a walk of every tree)",
        kind,
      ),
      snapshots: gauge('berth_pool_snapshots', 'Snapshots in the pool', pool),
      snapshotBytes: gauge(
        'berth_pool_snapshot_allocated_bytes',
        "Bytes the snapshots' data takes on disk (reflinked blocks count in full)",
        pool,
      ),
      nfsUp: gauge('berth_nfs_server_up', '1 when the NFS server answered a NULL call at this scrape, 0 when not', ['server']),
      nfsProbe: gauge(
        'berth_nfs_server_probe_seconds',
        "How long this scrape's NULL call to the server took (until it failed, when it did)",
        ['server'],
      ),
      // Labelled by node so that a scrape whose checks did not finish reports none, not 0.
      staged: gauge('berth_node_staged_volumes', 'Volumes staged on this node', ['node']),
      published: gauge('berth_node_published_volumes', 'Publications (bind mounts into pods) of the volumes staged on this node', ['node']),
      abnormal: gauge('berth_node_abnormal_volumes', 'Staged volumes whose condition is abnormal, by reason', ['node', 'reason']),
    };
  }

  /** One finished CSI call: `method` is the gRPC path, as csi-lib-utils labels it (/csi.v1.Controller/CreateVolume). */
  observeCall(method: string, code: number, seconds: number): void {
    this.operations.observe({ driver_name: this.identity.driver, method_name: method, grpc_status_code: grpcCodeName(code) }, seconds);
  }

  /** One finished NFS RPC of the controller's client. */
  observeNfs(server: string, procedure: string, seconds: number, replied: boolean): void {
    this.nfsRpc.observe({ server, procedure, result: replied ? 'reply' : 'no_reply' }, seconds);
  }

  /** The report, read now; scrapes that come while one is read share it. */
  report(): Promise<DriverReport> {
    this.refreshing ??= this.read().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async read(): Promise<DriverReport> {
    const node = this.sources.node;
    const [pools, nfsServers, nodePart] = await Promise.all([
      this.sources.pools?.(this.scanTimeoutMs) ?? [],
      this.sources.nfsServers?.(NFS_PROBE_TIMEOUT_MS) ?? [],
      node &&
        within(this.scanTimeoutMs, "this node's volume checks", node()).then(
          (status) => ({ node: status }),
          (err: Error) => ({ nodeError: err.message }),
        ),
    ]);
    return { ...this.identity, at: new Date().toISOString(), pools, nfsServers, ...nodePart };
  }

  /** The text format, every gauge set from a fresh report. */
  async exposition(): Promise<string> {
    this.update(await this.report());
    return this.registry.metrics();
  }

  private update(report: DriverReport): void {
    const g = this.gauges;
    for (const gauge of Object.values(g)) gauge.reset(); // a pool or server that went is not reported forever
    g.info.set({ driver_name: report.driver, version: report.version, mode: report.mode, node: report.nodeId }, 1);
    for (const p of report.pools) {
      const pool = { pool: p.pool, type: p.type };
      g.poolUp.set(pool, p.usage ? 1 : 0);
      const u = p.usage;
      if (!u) continue;
      g.size.set(pool, u.totalBytes);
      g.free.set(pool, u.freeBytes);
      for (const kind of VOLUME_KINDS) {
        const k = u.kinds[kind];
        g.volumes.set({ ...pool, kind }, k.volumes);
        g.provisioned.set({ ...pool, kind }, k.provisionedBytes);
        if (k.allocatedBytes !== undefined) g.allocated.set({ ...pool, kind }, k.allocatedBytes);
      }
      g.snapshots.set(pool, u.snapshots.count);
      if (u.snapshots.allocatedBytes !== undefined) g.snapshotBytes.set(pool, u.snapshots.allocatedBytes);
    }
    for (const s of report.nfsServers) {
      g.nfsUp.set({ server: s.server }, s.reachable ? 1 : 0);
      g.nfsProbe.set({ server: s.server }, s.seconds);
    }
    if (report.node) {
      const node = report.nodeId;
      g.staged.set({ node }, report.node.staged);
      g.published.set({ node }, report.node.published);
      // Every reason, 0 included: an alert on one reason sees it go back to 0.
      for (const reason of ABNORMAL_REASONS)
        g.abnormal.set({ node, reason }, report.node.abnormal.filter((a) => a.reason === reason).length);
    }
  }
}

/** Serves /metrics and /status on `address` (host:port); resolves once listening. */
export async function serveMetrics(address: string, metrics: DriverMetrics, log: { warn: (m: string, meta: object) => void }) {
  const { host, port } = parseListenAddress(address);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || (url !== '/metrics' && url !== '/status')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('berth serves /metrics and /status\n');
      return;
    }
    const body = url === '/metrics' ? metrics.exposition() : metrics.report().then((r) => `${JSON.stringify(r, null, 2)}\n`);
    body.then(
      (text) => res.writeHead(200, { 'content-type': url === '/metrics' ? metrics.registry.contentType : 'application/json' }).end(text),
      (err: unknown) => {
        log.warn('metrics: could not read the report', { error: (err as Error).message });
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
