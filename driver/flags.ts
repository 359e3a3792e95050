// The driver's command line, in the kubernetes-csi style. Exported so tests
// (and the Helm chart tests) can check that argument lists parse.
import os from 'node:os';

/**
 * all: one process for a one-machine cluster (controller and node, local and NFS pools).
 * controller: the central controller of the NFS driver (NFS pools; nodes from the CSINode objects).
 * node: the NFS driver's node plugin (node service for NFS volumes).
 * local: one node's local driver (controller and node service of that node's local pool).
 */
export type Mode = 'controller' | 'node' | 'all' | 'local';
export const MODES: readonly Mode[] = ['all', 'controller', 'node', 'local'];

export interface DriverFlags {
  endpoint: string;
  nodeId: string;
  driverName: string;
  mode: Mode;
  /** Controller mode: the kubeconfig to read CSINode objects with (default: the pod's service account). */
  kubeconfig: string;
  /** Controller mode: the local driver's name, for the central resizer's view of it. */
  localDriverName: string;
  /** Controller mode: where to serve that view (empty: not served). */
  localEndpoint: string;
  poolDir: string;
  nfsMountDir: string;
  /** Where operators pre-mount NFS exports (the mountedAt parameter); empty: mountedAt is refused. */
  mountedAtDirs: string[];
  kubeletDir: string;
  /** Where the node keeps what it staged and how (default <kubelet-dir>/plugins/<drivername>/state). */
  nodeStateDir: string;
  maxVolumesPerNode: number;
  /** Where NFS connections come from: a reserved port when possible (auto), always, or any. */
  nfsSourcePort: 'auto' | 'reserved' | 'any';
  /** Thin block images may promise, together, this many times the local pool's size. */
  thinOverprovision: number;
  copyWaitMs: number;
  /** Where to serve Prometheus metrics and the status report (host:port); empty: not served. */
  metricsAddress: string;
  /** How old a pool's usage scan a scrape may reuse (ms). */
  poolScanIntervalMs: number;
  logLevel: string;
  shutdownGraceMs: number;
  selfRegister: boolean;
  snapshotMetadata: boolean;
  kubeletRegistrationPath: string;
  help: boolean;
  version: boolean;
}

export const DEFAULT_DRIVER_NAME = 'berth.csi.dev';
export const DEFAULT_LOCAL_DRIVER_NAME = 'local.berth.csi.dev';
export const DEFAULT_ENDPOINT = 'unix:///tmp/berth/csi.sock';
export const DEFAULT_POOL_DIR = '/var/lib/berth/pool';

interface FlagSpec {
  key: keyof DriverFlags;
  kind: 'string' | 'int' | 'bool' | 'list' | 'ratio';
  help: string;
}

const SPECS: Record<string, FlagSpec> = {
  endpoint: {
    key: 'endpoint',
    kind: 'string',
    help: `CSI endpoint, unix:///path/csi.sock (env CSI_ENDPOINT; default ${DEFAULT_ENDPOINT})`,
  },
  nodeid: { key: 'nodeId', kind: 'string', help: 'node id reported by NodeGetInfo and owning the local pool (default: host name)' },
  drivername: {
    key: 'driverName',
    kind: 'string',
    help: `CSI driver name (default ${DEFAULT_DRIVER_NAME}; ${DEFAULT_LOCAL_DRIVER_NAME} in local mode)`,
  },
  mode: {
    key: 'mode',
    kind: 'string',
    help: "all (one machine: controller and node, local and NFS pools), controller (the NFS driver's central controller), node (the NFS driver's node plugin) or local (a node's local-pool driver) (default all)",
  },
  kubeconfig: {
    key: 'kubeconfig',
    kind: 'string',
    help: 'controller mode: kubeconfig for reading CSINode objects (default: in-cluster service account)',
  },
  'local-drivername': {
    key: 'localDriverName',
    kind: 'string',
    help: `controller mode: the local driver's name, served at --local-endpoint (default ${DEFAULT_LOCAL_DRIVER_NAME})`,
  },
  'local-endpoint': {
    key: 'localEndpoint',
    kind: 'string',
    help: "controller mode: serve the central csi-resizer's view of the local driver here (its nodes grow its volumes); default: not served",
  },
  'pool-dir': { key: 'poolDir', kind: 'string', help: `directory of the local pool (default ${DEFAULT_POOL_DIR})` },
  'kubelet-dir': { key: 'kubeletDir', kind: 'string', help: 'kubelet root directory (default /var/lib/kubelet)' },
  'node-state-dir': {
    key: 'nodeStateDir',
    kind: 'string',
    help: 'where the node records what it staged and how (default <kubelet-dir>/plugins/<drivername>/state)',
  },
  'nfs-mount-dir': {
    key: 'nfsMountDir',
    kind: 'string',
    help: 'where the node mounts NFS exports holding block images (default /var/lib/berth/nfs)',
  },
  'mounted-at-dirs': {
    key: 'mountedAtDirs',
    kind: 'list',
    help: 'comma-separated directories under which NFS exports are pre-mounted on this node (the mountedAt parameter); default none: mountedAt is refused',
  },
  'nfs-source-port': {
    key: 'nfsSourcePort',
    kind: 'string',
    help: 'auto, reserved or any: the source port of the controller NFS connections; exports marked secure (the Linux default) need a reserved one (default auto: reserved when the process may bind it)',
  },
  'thin-overprovision': {
    key: 'thinOverprovision',
    kind: 'ratio',
    help: 'thin block images (provisioning: thin) may promise, together, this many times the local pool size (default 1)',
  },
  'copy-wait': {
    key: 'copyWaitMs',
    kind: 'int',
    help: 'milliseconds a call waits for an NFS copy (snapshot, restore, clone) before answering that it goes on in the background (default 8000)',
  },
  'max-volumes-per-node': {
    key: 'maxVolumesPerNode',
    kind: 'int',
    help: 'max_volumes_per_node reported by NodeGetInfo; 0 = no limit (default 0)',
  },
  'metrics-address': {
    key: 'metricsAddress',
    kind: 'string',
    help: 'host:port to serve Prometheus metrics (/metrics) and the status report berth-ctl status reads (/status) on, e.g. 127.0.0.1:9810 (default: not served)',
  },
  'pool-scan-interval': {
    key: 'poolScanIntervalMs',
    kind: 'int',
    help: "milliseconds a pool's usage (every record read, allocation measured) is reused by metrics and /status before it is read again (default 10000)",
  },
  'log-level': { key: 'logLevel', kind: 'string', help: 'error, warn, info or debug (default info)' },
  'shutdown-grace': { key: 'shutdownGraceMs', kind: 'int', help: 'milliseconds in-flight calls get to finish on SIGTERM (default 10000)' },
  'snapshot-metadata': {
    key: 'snapshotMetadata',
    kind: 'bool',
    help: 'all/local mode: serve and advertise the SnapshotMetadata service (changed-block tracking) for the external-snapshot-metadata sidecar (default false)',
  },
  'self-register': {
    key: 'selfRegister',
    kind: 'bool',
    help: 'node/all mode: serve the kubelet plugin registration socket (default true; --self-register=false with node-driver-registrar)',
  },
  'kubelet-registration-path': {
    key: 'kubeletRegistrationPath',
    kind: 'string',
    help: "the CSI socket's path on the host, told to the kubelet (default: the --endpoint path)",
  },
  help: { key: 'help', kind: 'bool', help: 'print this help and exit' },
  version: { key: 'version', kind: 'bool', help: 'print the version and exit' },
};

export class FlagError extends Error {}

export function parseFlags(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): DriverFlags {
  const flags: DriverFlags = {
    endpoint: env.CSI_ENDPOINT || DEFAULT_ENDPOINT,
    nodeId: os.hostname(),
    driverName: '',
    mode: 'all',
    kubeconfig: '',
    localDriverName: DEFAULT_LOCAL_DRIVER_NAME,
    localEndpoint: '',
    poolDir: DEFAULT_POOL_DIR,
    nfsMountDir: '/var/lib/berth/nfs',
    mountedAtDirs: [],
    kubeletDir: '/var/lib/kubelet',
    nodeStateDir: '',
    maxVolumesPerNode: 0,
    thinOverprovision: 1,
    copyWaitMs: 8_000,
    metricsAddress: '',
    poolScanIntervalMs: 10_000,
    nfsSourcePort: 'auto',
    logLevel: 'info',
    shutdownGraceMs: 10_000,
    selfRegister: true,
    snapshotMetadata: false,
    kubeletRegistrationPath: '',
    help: false,
    version: false,
  };
  const values = flags as unknown as Record<string, string | number | boolean | string[]>;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const m = /^--?([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new FlagError(`unexpected argument "${arg}"`);
    const [, name, inline] = m as unknown as [string, string, string | undefined];
    const spec = SPECS[name];
    if (!spec) throw new FlagError(`unknown flag --${name}`);
    if (spec.kind === 'bool') {
      if (inline !== undefined && !['true', 'false'].includes(inline)) throw new FlagError(`--${name} takes true or false`);
      values[spec.key] = inline !== 'false';
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new FlagError(`--${name} needs a value`);
    if (spec.kind === 'int') {
      if (!/^\d+$/.test(value)) throw new FlagError(`--${name} takes a non-negative integer, got "${value}"`);
      values[spec.key] = Number(value);
    } else if (spec.kind === 'ratio') {
      if (!/^\d+(\.\d+)?$/.test(value) || Number(value) <= 0) throw new FlagError(`--${name} takes a positive number, got "${value}"`);
      values[spec.key] = Number(value);
    } else if (spec.kind === 'list') {
      values[spec.key] = value.split(',').filter(Boolean);
    } else {
      values[spec.key] = value;
    }
  }
  if (!MODES.includes(flags.mode)) throw new FlagError(`--mode must be ${MODES.join(', ')}, got "${flags.mode}"`);
  flags.driverName ||= flags.mode === 'local' ? DEFAULT_LOCAL_DRIVER_NAME : DEFAULT_DRIVER_NAME;
  if (!['auto', 'reserved', 'any'].includes(flags.nfsSourcePort)) throw new FlagError(`--nfs-source-port must be auto, reserved or any`);
  if (!['error', 'warn', 'info', 'debug'].includes(flags.logLevel)) throw new FlagError(`--log-level must be error, warn, info or debug`);
  for (const [flag, name] of [
    ['--drivername', flags.driverName],
    ['--local-drivername', flags.localDriverName],
  ]) {
    if (!/^[a-zA-Z][A-Za-z0-9-._]{0,61}[a-zA-Z]$/.test(name as string))
      throw new FlagError(`${flag} "${name}" is not a valid CSI plugin name`);
  }
  if (flags.localEndpoint) {
    if (flags.mode !== 'controller') throw new FlagError('--local-endpoint is for --mode controller');
    if (socketPath(flags.localEndpoint) === socketPath(flags.endpoint || DEFAULT_ENDPOINT))
      throw new FlagError('--local-endpoint must differ from --endpoint');
    if (flags.localDriverName === flags.driverName) throw new FlagError('--local-drivername must differ from --drivername');
  }
  if (flags.snapshotMetadata && flags.mode !== 'all' && flags.mode !== 'local')
    throw new FlagError('--snapshot-metadata is for --mode all or local: changed-block tracking reads a local pool');
  if (flags.metricsAddress) parseListenAddress(flags.metricsAddress); // validates
  if (flags.kubeconfig && !flags.kubeconfig.startsWith('/')) throw new FlagError('--kubeconfig must be an absolute path');
  if (!flags.nodeId || Buffer.byteLength(flags.nodeId) > 256) throw new FlagError('--nodeid must be 1 to 256 bytes');
  const csiSocket = socketPath(flags.endpoint); // validates
  flags.kubeletRegistrationPath ||= csiSocket;
  if (!flags.kubeletRegistrationPath.startsWith('/')) throw new FlagError('--kubelet-registration-path must be an absolute path');
  if (!flags.poolDir.startsWith('/')) throw new FlagError('--pool-dir must be an absolute path');
  if (!flags.kubeletDir.startsWith('/')) throw new FlagError('--kubelet-dir must be an absolute path');
  flags.nodeStateDir ||= `${flags.kubeletDir.replace(/\/+$/, '')}/plugins/${flags.driverName}/state`;
  if (!flags.nodeStateDir.startsWith('/')) throw new FlagError('--node-state-dir must be an absolute path');
  if (!flags.nfsMountDir.startsWith('/')) throw new FlagError('--nfs-mount-dir must be an absolute path');
  for (const d of flags.mountedAtDirs)
    if (!d.startsWith('/') || d === '/') throw new FlagError(`--mounted-at-dirs: "${d}" must be an absolute directory other than /`);
  flags.mountedAtDirs = flags.mountedAtDirs.map((d) => d.replace(/\/+$/, ''));
  return flags;
}

/** host:port, [v6]:port or :port (every address) of a TCP listener. */
export function parseListenAddress(address: string, flag = '--metrics-address'): { host: string | undefined; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(address);
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535) throw new FlagError(`${flag} "${address}" must be host:port, [ipv6]:port or :port`);
  return { host: m[1] ?? (m[2] || undefined), port };
}

/** The filesystem path of a unix:// endpoint. */
export function socketPath(endpoint: string): string {
  const m = /^unix:\/\/(\/.+)$/.exec(endpoint) ?? /^unix:(\/.+)$/.exec(endpoint);
  if (!m) throw new FlagError(`endpoint "${endpoint}" must be unix:///absolute/path`);
  return m[1] as string;
}

export function usage(): string {
  const names = Object.entries(SPECS).map(([name, spec]) => [`  --${name}${spec.kind === 'bool' ? '' : ' <value>'}`, spec.help] as const);
  const width = Math.max(...names.map(([n]) => n.length)) + 2; // the longest name, then two spaces
  return ['Usage: berth [flags]', '', 'Flags:', ...names.map(([n, help]) => n.padEnd(width) + help)].join('\n');
}
