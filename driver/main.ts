#!/usr/bin/env node
// The berth driver process: flags → pool → services → gRPC server on a unix
// socket; SIGTERM/SIGINT stop it gracefully.
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControllerService } from '../controller/controller-service.js';
import { GroupSnapshotService } from '../controller/group-snapshots.js';
import { KubernetesNodes } from '../controller/kubernetes-nodes.js';
import { LocalPool } from '../controller/local-pool.js';
import { NfsPools } from '../controller/nfs-pools.js';
import { type NodeDirectory, SelfNode } from '../controller/nodes.js';
import { CachedScan } from '../controller/pool-usage.js';
import type { ControllerRole } from '../controller/role.js';
import { SnapshotMetadataService } from '../controller/snapshot-metadata.js';
import { LinuxHost } from '../host/linux-host.js';
import { loadSystemCalls } from '../host/native.js';
import { BUILT_ADDON } from '../host/native-addon.js';
import { NodeService } from '../node/node-service.js';
import { loadCsi, loadRegistration } from '../proto/load.js';
import { type DriverFlags, FlagError, parseFlags, socketPath, usage } from './flags.js';
import { IdentityService } from './identity-service.js';
import { LocalDriverControllerView, LocalDriverNodeView } from './local-driver-view.js';
import { KeyedLocks } from './locks.js';
import { createLogger } from './log.js';
import { DriverMetrics, serveMetrics } from './metrics.js';
import { Pipeline } from './pipeline.js';
import { RegistrationService, registrationSocketPath } from './registration.js';
import { refuseLiveSocket, UnixServer } from './server.js';

export function packageVersion(): string {
  const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../package.json');
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

export interface RunningDriver {
  /** Stops every server; resolves with the number of calls still stuck. */
  stop(graceMs: number): Promise<{ forced: boolean; stuck: number }>;
  log: ReturnType<typeof createLogger>;
}

export async function startDriver(
  flags: DriverFlags,
  onRegistrationRefused: (reason: string) => void = () => undefined,
): Promise<RunningDriver> {
  // Before anything is touched: the Node service mounts and attaches loop devices, which only root may.
  requireRootWhereNeeded(flags);
  // A live socket means another driver runs with these flags.
  const registrationSocket = registrationSocketPath(flags.kubeletDir, flags.driverName);
  await refuseLiveSocket(socketPath(flags.endpoint));
  if (flags.mode !== 'controller' && flags.selfRegister) await refuseLiveSocket(registrationSocket);
  if (flags.localEndpoint) await refuseLiveSocket(socketPath(flags.localEndpoint));
  const log = createLogger(flags.logLevel);
  const version = packageVersion();
  const pipeline = new Pipeline(log, new KeyedLocks());
  const csi = loadCsi().csi.v1;
  // Which pools this process holds: the central controller and the NFS node plugin hold no local pool.
  const hasLocalPool = flags.mode === 'all' || flags.mode === 'local';
  const hasNfs = flags.mode !== 'local';
  const serveController = flags.mode !== 'node';
  const serveNode = flags.mode !== 'controller';
  // System calls without a process each (native/berth_sys.c), for the local pool and the node
  // service (the central NFS controller makes none); the commands when the addon is not there.
  const { sys, reason } = hasLocalPool || serveNode ? loadSystemCalls(BUILT_ADDON) : {};
  if (sys) log.info('system calls through the berth_sys addon');
  else if (reason) log.warn('the berth_sys addon did not load: mounts, loop devices and fallocate run as commands', { reason });
  // The pool and mount directories without symbolic links: images below them are attached only by
  // paths that have none (host.ts attachImage), and loop devices are matched to images by path.
  const poolDir = hasLocalPool ? await canonicalDir(flags.poolDir) : flags.poolDir;
  const pool = hasLocalPool ? new LocalPool(poolDir, flags.thinOverprovision, flags.poolScanIntervalMs, sys) : undefined;
  await pool?.init();
  // Metrics are made first: the NFS pools and the pipeline report into them.
  let metrics: DriverMetrics | undefined;
  const nfsPools = hasNfs
    ? new NfsPools({
        sourcePort: flags.nfsSourcePort,
        copyWaitMs: flags.copyWaitMs,
        onReply: flags.metricsAddress ? (...a) => metrics?.observeNfs(...a) : undefined,
        usageMaxAgeMs: flags.poolScanIntervalMs,
      })
    : undefined;
  const nodes = await nodeDirectory(flags);

  const server = new UnixServer(socketPath(flags.endpoint), pipeline.inFlight);
  const identity = new IdentityService({
    driverName: flags.driverName,
    version,
    controller: serveController,
    groupController: serveController,
    // Opt-in: clients written before spec v1.10 (csi-sanity v5.3.1 among them) refuse a plugin capability they do not know.
    snapshotMetadata: serveController && hasLocalPool && flags.snapshotMetadata,
    topology: true,
    // Probe answers for this driver (its local pool), not for every NFS
    // server a request named: one server down must not restart the pod.
    probe: async () => pool?.probe(),
  });
  server.add({ definition: csi.Identity.service, handlers: pipeline.serve(csi.Identity.service, identity) });
  const role = controllerRole(flags, pool, nfsPools, nodes);
  const controller = role && new ControllerService(role);
  if (controller) {
    server.add({
      definition: csi.Controller.service,
      handlers: pipeline.serve(csi.Controller.service, controller, ControllerService.lockKeys),
    });
    server.add({
      definition: csi.GroupController.service,
      handlers: pipeline.serve(csi.GroupController.service, new GroupSnapshotService(controller.pools), GroupSnapshotService.lockKeys),
    });
    if (hasLocalPool && flags.snapshotMetadata) {
      const metadata = new SnapshotMetadataService(controller.pools);
      server.add({ definition: csi.SnapshotMetadata.service, handlers: pipeline.serve(csi.SnapshotMetadata.service, metadata) });
    }
  }
  const node = serveNode
    ? new NodeService({
        nodeId: flags.nodeId,
        pool,
        servesNfs: hasNfs,
        // The local driver has no controller expansion: its node grows its volumes (all-in-one: the controller does).
        growLocalVolume: flags.mode === 'local' && controller ? (volumeId, bytes) => controller.growVolume(volumeId, bytes) : undefined,
        nfsMountDir: hasNfs ? await canonicalDir(flags.nfsMountDir) : flags.nfsMountDir,
        mountedAtDirs: flags.mountedAtDirs,
        kubeletDir: flags.kubeletDir,
        stateDir: flags.nodeStateDir,
        maxVolumesPerNode: flags.maxVolumesPerNode,
        host: new LinuxHost(sys),
      })
    : undefined;
  if (node) server.add({ definition: csi.Node.service, handlers: pipeline.serve(csi.Node.service, node, NodeService.lockKeys) });
  const servers = [server];
  if (flags.localEndpoint) servers.push(localDriverView(flags, version, pipeline, csi));
  let metricsServer: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  if (flags.metricsAddress) {
    metrics = new DriverMetrics(
      { driver: flags.driverName, version, mode: flags.mode, nodeId: flags.nodeId },
      {
        pools: controller && ((timeoutMs) => controller.poolReports(timeoutMs)),
        nfsServers: nfsPools && serveController ? (timeoutMs) => nfsPools.servers(timeoutMs) : undefined,
        // Checking each staged volume runs a few commands: reused like a pool's scan.
        node: node && scanOf(() => node.status(), flags.poolScanIntervalMs),
      },
    );
    const observer = metrics;
    pipeline.observe = (p, code, seconds) => observer.observeCall(p, code, seconds);
    metricsServer = await serveMetrics(flags.metricsAddress, metrics, log);
  }
  for (const s of servers) await s.start();
  if (serveNode && flags.selfRegister) {
    // Started after the CSI socket: the kubelet calls NodeGetInfo as soon as it sees this one.
    const definition = loadRegistration().pluginregistration.Registration.service;
    const registration = new UnixServer(registrationSocket, pipeline.inFlight);
    const service = new RegistrationService({
      driverName: flags.driverName,
      endpoint: flags.kubeletRegistrationPath,
      log,
      onRefused: onRegistrationRefused,
    });
    registration.add({ definition, handlers: pipeline.serve(definition, service) });
    await registration.start();
    servers.unshift(registration); // stopped first: the kubelet deregisters before the CSI socket goes
  }
  log.info('berth started', { version, mode: flags.mode, endpoint: flags.endpoint, nodeId: flags.nodeId, poolDir: flags.poolDir });
  return {
    log,
    async stop(graceMs: number) {
      const results = [];
      for (const s of servers) results.push(await s.stop(graceMs));
      nfsPools?.close();
      metricsServer?.close();
      metricsServer?.closeAllConnections();
      return { forced: results.some((r) => r.forced), stuck: Math.max(...results.map((r) => r.stuck)) };
    },
  };
}

/**
 * The Node service (modes all, node and local) mounts, binds and attaches
 * loop devices: refused at start when this process is not root, saying so,
 * rather than failing later with a raw permission error. The central
 * controller (--mode controller) needs no privilege.
 */
export function requireRootWhereNeeded(flags: Pick<DriverFlags, 'mode'>, uid = process.geteuid?.() ?? 0): void {
  if (flags.mode === 'controller' || uid === 0) return;
  throw new Error(
    `--mode ${flags.mode} serves the Node service, which mounts volumes and attaches loop devices: run it as root (uid 0; this process is uid ${uid}). Only --mode controller, the NFS driver's central controller, runs unprivileged`,
  );
}

/** What the controller of this process is (controller/role.ts); undefined when it serves none (a node plugin). */
function controllerRole(
  flags: DriverFlags,
  local: LocalPool | undefined,
  nfs: NfsPools | undefined,
  nodes: NodeDirectory | undefined,
): ControllerRole | undefined {
  const { nodeId } = flags;
  if (flags.mode === 'all' && local && nfs && nodes) return { kind: 'all-in-one', nodeId, local, nfs, nodes };
  if (flags.mode === 'controller' && nfs && nodes) return { kind: 'nfs-controller', nodeId, nfs, nodes };
  if (flags.mode === 'local' && local) return { kind: 'local-driver', nodeId, local };
  return undefined;
}

/** A directory berth keeps (made 0700 when missing), named without symbolic links. */
async function canonicalDir(dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  return fs.realpath(dir);
}

/** A scan function whose result is reused for `maxAgeMs`. */
function scanOf<T>(scan: () => Promise<T>, maxAgeMs: number): () => Promise<T> {
  const cached = new CachedScan(scan, maxAgeMs);
  return () => cached.get();
}

/**
 * Who may be attached to. All-in-one: this process is the one node. The
 * central controller: the nodes whose CSINode lists this driver. A node's
 * local driver has no attach step.
 */
async function nodeDirectory(flags: DriverFlags): Promise<NodeDirectory | undefined> {
  if (flags.mode === 'all') return new SelfNode(flags.nodeId, flags.maxVolumesPerNode);
  if (flags.mode !== 'controller') return undefined;
  if (!flags.kubeconfig && !process.env.KUBERNETES_SERVICE_HOST) {
    throw new Error(
      '--mode controller reads the nodes from the CSINode objects: run it in a cluster (service account) or pass --kubeconfig',
    );
  }
  return KubernetesNodes.connect(flags.driverName, { kubeconfig: flags.kubeconfig || undefined });
}

/** The central csi-resizer's socket for the local driver (local-driver-view.ts). */
function localDriverView(flags: DriverFlags, version: string, pipeline: Pipeline, csi: ReturnType<typeof loadCsi>['csi']['v1']) {
  const view = new UnixServer(socketPath(flags.localEndpoint), pipeline.inFlight);
  const identity = new IdentityService({
    driverName: flags.localDriverName,
    version,
    controller: true,
    topology: true,
    probe: async () => undefined,
  });
  view.add({ definition: csi.Identity.service, handlers: pipeline.serve(csi.Identity.service, identity) });
  view.add({ definition: csi.Controller.service, handlers: pipeline.serve(csi.Controller.service, new LocalDriverControllerView()) });
  view.add({ definition: csi.Node.service, handlers: pipeline.serve(csi.Node.service, new LocalDriverNodeView()) });
  return view;
}

async function main(): Promise<void> {
  let flags: DriverFlags;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`berth: ${err.message}\n\n${usage()}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (flags.help) {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  if (flags.version) {
    process.stdout.write(`berth ${packageVersion()}\n`);
    return;
  }
  let stopping = false;
  let exitCode = 0;
  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { why });
    void driver.stop(flags.shutdownGraceMs).then(({ forced, stuck }) => {
      if (stuck === 0) {
        log.info('stopped', { forced });
        process.exit(exitCode);
      }
      // A call still in flight may be blocked in the kernel (a hung NFS
      // server, say). Node's exit joins its thread pool and would wait for
      // it forever, so end the process the one way that cannot hang.
      log.error('stopped with calls still in flight after the grace period; killing the process', { stuck });
      setTimeout(() => process.kill(process.pid, 'SIGKILL'), 100);
    });
  };
  const driver = await startDriver(flags, (reason) => {
    exitCode = 1;
    stop(`registration refused: ${reason}`);
  });
  const { log } = driver;
  process.stdout.write(`berth ${flags.mode} listening on ${flags.endpoint} (pool ${flags.poolDir}, node ${flags.nodeId})\n`);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** Runs the driver process: bin/berth.cjs calls this, with the thread pool sized first (it says why). */
export function run(): void {
  // Every file and directory the driver makes gets an explicit mode.
  process.umask(0);
  main().catch((err: unknown) => {
    process.stderr.write(`berth: ${(err as Error).message}\n`);
    process.exit(1);
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  process.stderr.write("berth: started as dist/driver/main.js, with libuv's default 4 threads: start bin/berth.cjs\n");
  run();
}
