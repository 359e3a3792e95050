// The Helm chart, with the real Helm binary (fetched and pinned by
// scripts/fetch-helm.sh): lint, render over a matrix of values, validate
// every object against the Kubernetes schemas (kubernetes-models), type-check
// them against the Kubernetes TypeScript types so unknown fields fail, parse
// the berth container arguments with the driver's own flag parser, and check
// that the socket paths of node plugin, registrar, kubelet and livenessprobe
// agree. The examples get the same validation.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { CSIDriver, StorageClass } from 'kubernetes-models/storage.k8s.io/v1';
import { ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Service, ServiceAccount } from 'kubernetes-models/v1';
import { parseAllDocuments, stringify } from 'yaml';
import { parseFlags, socketPath } from '../../driver/flags.js';
import { NFS_DRIVER_NAME } from '../../flex/migrate.js';
import { parseParameters } from '../../volume/parameters.js';

const exec = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CHART = path.join(ROOT, 'charts/berth');
const HELM = path.join(ROOT, '.tools/helm-v3.18.0/helm');

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; [k: string]: unknown };
type Container = { name: string; args?: string[]; volumeMounts?: Array<{ name: string; mountPath: string; mountPropagation?: string }> };
type Workload = K8sObject & {
  spec: {
    template: {
      spec: { containers: Container[]; initContainers?: Container[]; volumes: Array<{ name: string; hostPath?: { path: string } }> };
    };
  };
};

/** kubernetes-models class and kubernetes-types interface for each kind we render. */
const KINDS: Record<string, { model: new (data?: never) => { validate(): void }; type: string }> = {
  'apps/v1/DaemonSet': { model: DaemonSet, type: "import('kubernetes-types/apps/v1').DaemonSet" },
  'apps/v1/Deployment': { model: Deployment, type: "import('kubernetes-types/apps/v1').Deployment" },
  'v1/ServiceAccount': { model: ServiceAccount, type: "import('kubernetes-types/core/v1').ServiceAccount" },
  'v1/PersistentVolume': { model: PersistentVolume, type: "import('kubernetes-types/core/v1').PersistentVolume" },
  'v1/PersistentVolumeClaim': { model: PersistentVolumeClaim, type: "import('kubernetes-types/core/v1').PersistentVolumeClaim" },
  'v1/Pod': { model: Pod, type: "import('kubernetes-types/core/v1').Pod" },
  'v1/Service': { model: Service, type: "import('kubernetes-types/core/v1').Service" },
  'v1/ConfigMap': { model: ConfigMap, type: "import('kubernetes-types/core/v1').ConfigMap" },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    model: crdModel('ServiceMonitor', { spec: 'object' }, {}),
    type: "{ apiVersion: 'monitoring.coreos.com/v1'; kind: 'ServiceMonitor'; metadata: import('kubernetes-types/meta/v1').ObjectMeta; spec: { selector: import('kubernetes-types/meta/v1').LabelSelector; namespaceSelector?: { matchNames: string[] }; endpoints: Array<{ port: string; path: string; interval: string; relabelings?: Array<{ sourceLabels: string[]; targetLabel: string }> }> } }",
  },
  'rbac.authorization.k8s.io/v1/ClusterRole': { model: ClusterRole, type: "import('kubernetes-types/rbac/v1').ClusterRole" },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': {
    model: ClusterRoleBinding,
    type: "import('kubernetes-types/rbac/v1').ClusterRoleBinding",
  },
  'rbac.authorization.k8s.io/v1/Role': { model: Role, type: "import('kubernetes-types/rbac/v1').Role" },
  'rbac.authorization.k8s.io/v1/RoleBinding': { model: RoleBinding, type: "import('kubernetes-types/rbac/v1').RoleBinding" },
  'storage.k8s.io/v1/CSIDriver': { model: CSIDriver, type: "import('kubernetes-types/storage/v1').CSIDriver" },
  'storage.k8s.io/v1/StorageClass': { model: StorageClass, type: "import('kubernetes-types/storage/v1').StorageClass" },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, type: "import('kubernetes-types/policy/v1').PodDisruptionBudget" },
  'snapshot.storage.k8s.io/v1/VolumeSnapshotClass': {
    model: crdModel('VolumeSnapshotClass', { driver: 'string', deletionPolicy: ['Delete', 'Retain'] }, { parameters: 'map' }),
    type: "{ apiVersion: 'snapshot.storage.k8s.io/v1'; kind: 'VolumeSnapshotClass'; metadata: import('kubernetes-types/meta/v1').ObjectMeta; driver: string; deletionPolicy: 'Delete' | 'Retain'; parameters?: Record<string, string> }",
  },
  'snapshot.storage.k8s.io/v1/VolumeSnapshot': {
    model: crdModel('VolumeSnapshot', { spec: 'object' }, {}),
    type: "{ apiVersion: 'snapshot.storage.k8s.io/v1'; kind: 'VolumeSnapshot'; metadata: import('kubernetes-types/meta/v1').ObjectMeta; spec: { volumeSnapshotClassName?: string; source: { persistentVolumeClaimName: string } | { volumeSnapshotContentName: string } } }",
  },
};

/**
 * A validator for the snapshot CRDs' objects (kubernetes-models has none):
 * the required and optional top-level fields of the CRD's v1 schema
 * (external-snapshotter client/config/crd), nothing else.
 */
function crdModel(kind: string, required: Record<string, string | string[]>, optional: Record<string, string>) {
  return class {
    constructor(private readonly o: Record<string, unknown>) {}
    validate(): void {
      const allowed = new Set(['apiVersion', 'kind', 'metadata', ...Object.keys(required), ...Object.keys(optional)]);
      for (const k of Object.keys(this.o)) if (!allowed.has(k)) throw new Error(`${kind}: unknown field ${k}`);
      if (typeof (this.o.metadata as { name?: unknown })?.name !== 'string') throw new Error(`${kind}: metadata.name is required`);
      for (const [k, t] of Object.entries({ ...required, ...optional })) {
        const v = this.o[k];
        if (v === undefined) {
          if (k in required) throw new Error(`${kind}: ${k} is required`);
          continue;
        }
        const ok = Array.isArray(t)
          ? t.includes(v as string)
          : t === 'map'
            ? typeof v === 'object' && Object.values(v as object).every((x) => typeof x === 'string')
            : typeof v === t;
        if (!ok) throw new Error(`${kind}: ${k} must be ${Array.isArray(t) ? t.join(' or ') : t}`);
      }
      if (kind === 'VolumeSnapshot') {
        const source = (this.o.spec as { source?: Record<string, unknown> }).source ?? {};
        if (Object.keys(source).length !== 1)
          throw new Error('VolumeSnapshot: spec.source needs exactly one of persistentVolumeClaimName, volumeSnapshotContentName');
      }
    }
  } as unknown as new (
    data?: never,
  ) => { validate(): void };
}

/**
 * The flags each sidecar version defines, read from its source at that tag
 * (cmd/<sidecar>/main.go or csi-provisioner.go, plus the
 * csi-lib-utils/standardflags it registers where it does). A chart flag
 * outside these makes that sidecar exit at start.
 */
const LEADER_ELECTION = [
  'leader-election',
  'leader-election-namespace',
  'leader-election-lease-duration',
  'leader-election-renew-deadline',
  'leader-election-retry-period',
  'leader-election-labels',
];
const STANDARD = [
  'csi-address',
  'kubeconfig',
  'kube-api-qps',
  'kube-api-burst',
  'http-endpoint',
  'metrics-address',
  'metrics-path',
  'version',
  'automaxprocs',
  ...LEADER_ELECTION,
];
const SIDECAR_FLAGS: Record<string, { image: string; version: string; flags: string[] }> = {
  'csi-provisioner': {
    image: 'provisioner',
    version: 'v6.3.0',
    flags: [
      ...STANDARD,
      'feature-gates',
      'timeout',
      'extra-create-metadata',
      'default-fstype',
      'node-deployment',
      'node-deployment-immediate-binding',
      'node-deployment-base-delay',
      'node-deployment-max-delay',
      'strict-topology',
      'immediate-topology',
      'enable-capacity',
      'capacity-ownerref-level',
      'capacity-poll-interval',
      'capacity-threads',
      'capacity-for-immediate-binding',
      'worker-threads',
      'volume-name-prefix',
      'retry-interval-start',
      'retry-interval-max',
    ],
  },
  'csi-attacher': {
    image: 'attacher',
    version: 'v4.12.0',
    flags: [...STANDARD, 'feature-gates', 'timeout', 'resync', 'worker-threads', 'reconcile-sync', 'default-fstype', 'max-entries'],
  },
  'csi-resizer': {
    image: 'resizer',
    version: 'v2.2.1',
    flags: [...STANDARD, 'timeout', 'resync-period', 'workers', 'handle-volume-inuse-error', 'retry-interval-start', 'retry-interval-max'],
  },
  'csi-resizer-local': { image: 'resizer', version: 'v2.2.1', flags: [] },
  'csi-snapshotter': {
    image: 'snapshotter',
    version: 'v8.6.0',
    flags: [
      ...STANDARD,
      'feature-gates',
      'timeout',
      'extra-create-metadata',
      'node-deployment',
      'resync-period',
      'worker-threads',
      'snapshot-name-prefix',
      'snapshot-name-uuid-length',
      'groupsnapshot-name-prefix',
      'groupsnapshot-name-uuid-length',
      'retry-interval-start',
      'retry-interval-max',
    ],
  },
  // The flags of cmd/csi-external-health-monitor-controller/main.go (leader election from csi-lib-utils).
  'csi-external-health-monitor-controller': {
    image: 'healthMonitor',
    version: 'v0.19.0',
    flags: [
      'csi-address',
      'kubeconfig',
      'resync',
      'version',
      'timeout',
      'monitor-interval',
      'list-volumes-interval',
      'volume-list-add-interval',
      'node-list-add-interval',
      'worker-threads',
      'enable-node-watcher',
      'leader-election',
      'leader-election-namespace',
      'metrics-address',
      'http-endpoint',
      'metrics-path',
    ],
  },
  'liveness-probe': {
    image: 'livenessProbe',
    version: 'v2.19.0',
    flags: ['csi-address', 'health-port', 'probe-timeout', 'http-endpoint', 'metrics-address', 'metrics-path'],
  },
  'node-driver-registrar': {
    image: 'nodeDriverRegistrar',
    version: 'v2.17.0',
    flags: ['csi-address', 'kubelet-registration-path', 'plugin-registration-path', 'health-port', 'http-endpoint', 'timeout', 'mode'],
  },
};
SIDECAR_FLAGS['csi-resizer-local']!.flags = SIDECAR_FLAGS['csi-resizer']!.flags;

const THREE_NODES = {
  controller: { replicas: 2 },
  localPools: { nodeSelector: { 'berth.csi.dev/local-pool': 'true' }, capacityPollInterval: '30s' },
  node: { mountedAtDirs: ['/mnt/nas'] },
  snapshots: {
    groupSnapshots: true,
    snapshotMetadata: true,
    classes: [
      { name: 'berth-local', pool: 'local', default: true },
      { name: 'berth-nfs', pool: 'nfs', deletionPolicy: 'Retain', parameters: { freeze: 'false' } },
    ],
  },
  storageClasses: [
    { name: 'berth-local-block', pool: 'local', kind: 'block', fsType: 'xfs', parameters: { provisioning: 'thin' } },
    {
      name: 'nfs-share',
      pool: 'nfs',
      kind: 'share',
      default: true,
      parameters: { server: 'nfs.example.com', share: '/export', subDir: '${pvc.metadata.namespace}-${pvc.metadata.name}' },
      mountOptions: ['nfsvers=4.1'],
    },
    { name: 'nfs-block', pool: 'nfs', kind: 'block', fsType: 'xfs', parameters: { server: 'nfs.example.com', share: '/export' } },
  ],
};

const MATRIX: Record<string, object> = {
  defaults: {},
  'three-node cluster': THREE_NODES,
  'NFS only': {
    localPools: { enabled: false },
    logLevel: 'debug',
    node: { maxVolumesPerNode: 64 },
    snapshots: { enabled: false },
    storageClasses: [{ name: 'nfs-share', pool: 'nfs', kind: 'share', parameters: { server: 'nfs.example.com', share: '/export' } }],
  },
  'flex installer on': { flexInstaller: { enabled: true } },
  'monitoring on': {
    metrics: { serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus-stack' } }, grafanaDashboard: { enabled: true } },
  },
  'metrics off': { metrics: { enabled: false } },
  'registrar sidecar on': { node: { selfRegistration: false } },
  'health monitor on': { healthMonitor: { enabled: true } },
  'custom kubelet dir': { kubeletDir: '/var/snap/microk8s/common/var/lib/kubelet', image: { digest: `sha256:${'a'.repeat(64)}` } },
};

/** Where an operator pushed berth's image: the chart renders nothing without it. */
const IMAGE_REPOSITORY = 'registry.example.com/storage/berth';

/** A values file of `values`, naming berth's image unless `withImage` is false. */
async function valuesFile(dir: string, name: string, values: object, withImage = true): Promise<string> {
  const file = path.join(dir, `${name.replace(/\W+/g, '-')}.yaml`);
  const image = { repository: IMAGE_REPOSITORY, ...(values as { image?: object }).image };
  await fs.writeFile(file, stringify(withImage ? { ...values, image } : values));
  return file;
}

/**
 * The user each image the chart names runs as when the pod does not say,
 * from the image's Dockerfile at that tag: the kubernetes-csi sidecars are
 * built FROM gcr.io/distroless/static with no USER line (so root), as is
 * pause 3.10's uid 65535 set in its own Dockerfile (USER 65535:65535), and
 * berth's own Dockerfile has no USER (the node plugin must be root).
 * An image missing here counts as root, as the kubelet would find it.
 */
const IMAGE_USERS: Record<string, number> = {
  'registry.k8s.io/sig-storage/csi-provisioner:v6.3.0': 0,
  'registry.k8s.io/sig-storage/csi-attacher:v4.12.0': 0,
  'registry.k8s.io/sig-storage/csi-resizer:v2.2.1': 0,
  'registry.k8s.io/sig-storage/livenessprobe:v2.19.0': 0,
  'registry.k8s.io/sig-storage/csi-snapshotter:v8.6.0': 0,
  'registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.17.0': 0,
  'registry.k8s.io/pause:3.10': 65535,
};

type SecurityContext = { runAsNonRoot?: boolean; runAsUser?: number };
type PodContainer = Container & {
  image: string;
  securityContext?: SecurityContext;
  ports?: Array<{ name?: string; containerPort: number }>;
  resources?: Resources;
};
type PodSpec = {
  hostNetwork?: boolean;
  dnsPolicy?: string;
  securityContext?: SecurityContext;
  containers: PodContainer[];
  initContainers?: PodContainer[];
};
type Resources = { requests?: Record<string, string>; limits?: Record<string, string> };

/**
 * Why the kubelet would refuse to start `c` (pkg/kubelet/kuberuntime
 * verifyRunAsNonRoot): under runAsNonRoot, the container's or else the pod's
 * runAsUser must be non-zero, or, with neither, the image's numeric USER.
 */
function runAsNonRootRefusal(pod: PodSpec, c: PodSpec['containers'][number]): string | undefined {
  if (!(c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot)) return undefined;
  const uid = c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser ?? IMAGE_USERS[c.image] ?? 0;
  return uid === 0 ? `container has runAsNonRoot and image will run as root (container ${c.name}, image ${c.image})` : undefined;
}

function parseDocs(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

const kindKey = (o: K8sObject) => `${o.apiVersion}/${o.kind}`;

describe('Helm chart (real helm binary)', function () {
  this.timeout(180_000);
  let dir: string;
  const rendered = new Map<string, K8sObject[]>();
  const examples = new Map<string, K8sObject[]>();

  before(async () => {
    // Says so when it fetches Helm (the first run on a machine); silent when cached.
    const fetched = await exec('bash', [path.join(ROOT, 'scripts/fetch-helm.sh')]);
    if (fetched.stdout.trim()) console.log(`      ${fetched.stdout.trim().replace(/\n/g, '\n      ')}`);
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-chart-'));
    for (const [name, values] of Object.entries(MATRIX)) {
      const f = await valuesFile(dir, name, values);
      const { stdout } = await exec(HELM, ['template', 'berth', CHART, '--namespace', 'kube-system', '-f', f]);
      rendered.set(name, parseDocs(stdout));
      await fs.writeFile(path.join(dir, `${path.basename(f, '.yaml')}.rendered.yaml`), stdout);
    }
    for (const f of await fs.readdir(path.join(ROOT, 'examples'))) {
      examples.set(f, parseDocs(await fs.readFile(path.join(ROOT, 'examples', f), 'utf8')));
    }
  });
  after(async () => fs.rm(dir, { recursive: true, force: true }));

  it('passes helm lint --strict for every values set', async () => {
    for (const [name, values] of Object.entries(MATRIX)) {
      const f = await valuesFile(dir, `lint-${name}`, values);
      const { stdout } = await exec(HELM, ['lint', '--strict', CHART, '-f', f]);
      expect(stdout, name).to.contain('0 chart(s) failed');
    }
  });

  it('has one shape from 1 to N nodes: a central controller, the NFS node plugin everywhere, the local driver where pools are', () => {
    const kinds = (name: string) => rendered.get(name)!.map((o) => `${o.kind}/${o.metadata.name}`);
    for (const name of ['defaults', 'three-node cluster']) {
      expect(kinds(name), name).to.include.members([
        'CSIDriver/berth.csi.dev',
        'CSIDriver/local.berth.csi.dev',
        'Deployment/berth-controller',
        'PodDisruptionBudget/berth-controller',
        'DaemonSet/berth-node',
        'DaemonSet/berth-local',
        'ServiceAccount/berth-node',
        'ServiceAccount/berth-local',
      ]);
    }
    for (const member of ['DaemonSet/berth-local', 'CSIDriver/local.berth.csi.dev']) expect(kinds('NFS only')).to.not.include(member);
    expect(kinds('flex installer on')).to.include('DaemonSet/berth-flex-installer');
    const drivers = Object.fromEntries(
      rendered
        .get('three-node cluster')!
        .filter((o) => o.kind === 'CSIDriver')
        .map((o) => [o.metadata.name, (o as K8sObject & { spec: object }).spec]),
    );
    // The FlexVolume migration writes PVs for the driver that serves NFS volumes: the attaching one.
    expect(drivers[NFS_DRIVER_NAME]).to.have.property('attachRequired', true);
    expect(drivers['berth.csi.dev']).to.deep.equal({
      attachRequired: true,
      podInfoOnMount: true,
      fsGroupPolicy: 'File',
      volumeLifecycleModes: ['Persistent'],
    });
    expect(drivers['local.berth.csi.dev']).to.deep.equal({
      attachRequired: false,
      storageCapacity: true,
      podInfoOnMount: true,
      fsGroupPolicy: 'File',
      volumeLifecycleModes: ['Persistent'],
    });
    const objects = rendered.get('three-node cluster')!;
    const local = objects.find((o): o is Workload => o.kind === 'DaemonSet' && o.metadata.name === 'berth-local')!;
    const localPod = local.spec.template.spec as unknown as { nodeSelector: Record<string, string> };
    expect(localPod.nodeSelector).to.deep.equal({ 'berth.csi.dev/local-pool': 'true' });
    const provisioner = local.spec.template.spec.containers.find((c) => c.name === 'csi-provisioner')! as Container & {
      env: Array<{ name: string }>;
    };
    expect(provisioner.args).to.include.members([
      '--node-deployment=true',
      '--leader-election=false',
      '--enable-capacity',
      '--capacity-ownerref-level=0',
      '--capacity-poll-interval=30s',
      '--strict-topology',
    ]);
    expect(provisioner.env.map((e) => e.name).sort()).to.deep.equal(['NAMESPACE', 'NODE_NAME', 'POD_NAME']);
    // The local driver has no attacher and no per-node resizer: one central resizer serves it.
    for (const member of ['csi-attacher', 'csi-resizer'])
      expect(local.spec.template.spec.containers.map((c) => c.name)).to.not.include(member);
    const controller = objects.find((o): o is Workload => o.kind === 'Deployment')!;
    const names = controller.spec.template.spec.containers.map((c) => c.name);
    expect(names).to.include.members(['csi-provisioner', 'csi-attacher', 'csi-resizer', 'csi-resizer-local']);
    const berth = controller.spec.template.spec.containers.find((c) => c.name === 'berth')!;
    const flags = parseFlags(
      berth.args!.map((a) => a.replace(/\$\([A-Z_]+\)/g, 'pod-1')),
      {},
    );
    const localResizer = controller.spec.template.spec.containers.find((c) => c.name === 'csi-resizer-local')!;
    expect(localResizer.args).to.include(`--csi-address=${socketPath(flags.localEndpoint).replace(/^\/csi/, '/csi')}`);
    expect(flags.localDriverName).to.equal('local.berth.csi.dev');
    // The local classes name the local driver; the NFS classes the NFS one.
    for (const sc of objects.filter((o) => o.kind === 'StorageClass') as Array<
      K8sObject & { provisioner: string; parameters: { pool: string } }
    >) {
      expect(sc.provisioner, sc.metadata.name).to.equal(sc.parameters.pool === 'local' ? 'local.berth.csi.dev' : 'berth.csi.dev');
    }
  });

  it('gives each service account exactly what its sidecars need', () => {
    const objects = rendered.get('three-node cluster')!;
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
    const rulesOf = (kind: string, name: string) =>
      ((objects.find((o) => o.kind === kind && o.metadata.name === name) as K8sObject & { rules: Rule[] })?.rules ?? []).flatMap((r) =>
        r.resources.flatMap((res) => r.verbs.map((v) => `${r.apiGroups[0] || 'core'}/${res}:${v}`)),
      );
    const controller = [...rulesOf('ClusterRole', 'berth-controller'), ...rulesOf('Role', 'berth-leader-election')];
    // berth reads CSINodes; the attacher patches VolumeAttachments; all leader-elect through Leases.
    expect(controller).to.include.members([
      'storage.k8s.io/csinodes:list',
      'storage.k8s.io/volumeattachments:patch',
      'storage.k8s.io/volumeattachments/status:patch',
      'coordination.k8s.io/leases:update',
      'core/persistentvolumes:create',
    ]);
    expect(controller).to.not.include('storage.k8s.io/csistoragecapacities:create');
    const local = [...rulesOf('ClusterRole', 'berth-local'), ...rulesOf('Role', 'berth-local-capacity')];
    expect(local).to.include.members([
      'storage.k8s.io/csistoragecapacities:create',
      'storage.k8s.io/csistoragecapacities:delete',
      'core/pods:get',
      'core/persistentvolumes:create',
    ]);
    // Snapshots: both snapshotters update contents and their status; the provisioners read snapshots to restore.
    for (const rules of [controller, local]) {
      expect(rules).to.include.members([
        'snapshot.storage.k8s.io/volumesnapshotcontents:patch',
        'snapshot.storage.k8s.io/volumesnapshotcontents/status:update',
        'snapshot.storage.k8s.io/volumesnapshots:get',
        'groupsnapshot.storage.k8s.io/volumegroupsnapshotcontents:update',
      ]);
    }
    // No leader election per node, no attach.
    expect(local.filter((r) => r.startsWith('coordination.k8s.io/') || r.includes('volumeattachments:patch'))).to.deep.equal([]);
    const bindings = objects.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding') as Array<
      K8sObject & { subjects: Array<{ name: string }> }
    >;
    expect(bindings.flatMap((b) => b.subjects.map((x) => x.name))).to.not.include('berth-node');
  });

  it("snapshots: a csi-snapshotter per node for local pools, a central one for NFS, classes naming their pool's driver", () => {
    const objects = rendered.get('three-node cluster')!;
    const workload = (n: string) => objects.find((o) => o.metadata.name === n && /DaemonSet|Deployment/.test(o.kind)) as Workload;
    const snapshotter = (n: string) => workload(n).spec.template.spec.containers.find((c) => c.name === 'csi-snapshotter');
    expect(snapshotter('berth-local')?.args).to.include.members([
      '--node-deployment=true',
      '--leader-election=false',
      '--feature-gates=CSIVolumeGroupSnapshot=true',
    ]);
    expect(snapshotter('berth-controller')?.args).to.include('--leader-election=true');
    expect(snapshotter('berth-controller')?.args).to.not.include('--node-deployment=true');
    // The node plugin of the NFS driver takes no snapshots.
    expect(snapshotter('berth-node')).to.equal(undefined);
    const berthArgs = workload('berth-local').spec.template.spec.containers.find((c) => c.name === 'berth')?.args ?? [];
    expect(berthArgs).to.include('--snapshot-metadata');
    const classes = objects.filter((o) => o.kind === 'VolumeSnapshotClass') as Array<
      K8sObject & { driver: string; deletionPolicy: string }
    >;
    expect(classes.map((c) => [c.metadata.name, c.driver, c.deletionPolicy])).to.deep.equal([
      ['berth-local', 'local.berth.csi.dev', 'Delete'],
      ['berth-nfs', 'berth.csi.dev', 'Retain'],
    ]);
    // Off: no snapshotter, no class, no snapshot rules.
    const off = rendered.get('NFS only')!;
    expect(off.filter((o) => o.kind === 'VolumeSnapshotClass')).to.deep.equal([]);
    expect(JSON.stringify(off)).to.not.contain('csi-snapshotter');
    expect(JSON.stringify(off)).to.not.contain('snapshot.storage.k8s.io');
  });

  it('runs the external-health-monitor controller beside the NFS controller when asked, with what its service account needs', () => {
    const containers = (name: string) =>
      (rendered.get(name)!.find((o) => o.metadata.name === 'berth-controller' && o.kind === 'Deployment') as Workload).spec.template.spec
        .containers;
    const monitor = containers('health monitor on').find((c) => c.name === 'csi-external-health-monitor-controller');
    expect(monitor?.args).to.include.members(['--csi-address=/csi/csi.sock', '--leader-election=true']);
    expect(containers('defaults').map((c) => c.name)).to.not.include('csi-external-health-monitor-controller');
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
    const role = rendered
      .get('health monitor on')!
      .find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'berth-controller') as K8sObject & {
      rules: Rule[];
    };
    const rules = role.rules.flatMap((r) => r.resources.flatMap((res) => r.verbs.map((v) => `${res}:${v}`)));
    expect(rules).to.include.members([
      'persistentvolumes:watch',
      'persistentvolumeclaims:watch',
      'pods:list',
      'nodes:list',
      'events:create',
    ]);
  });

  it("uses only flags each sidecar's version defines (read from its source at that tag)", () => {
    for (const [name, objects] of rendered) {
      const values = MATRIX[name] as { sidecars?: Record<string, { tag?: string }> };
      for (const o of objects.filter((x): x is Workload => x.kind === 'DaemonSet' || x.kind === 'Deployment')) {
        if (o.metadata.name.endsWith('-flex-installer')) continue; // no CSI sidecars there
        for (const c of o.spec.template.spec.containers.filter((x) => x.name !== 'berth')) {
          const known = SIDECAR_FLAGS[c.name];
          expect(known, `${name}: ${c.name} has no flag table`).to.not.equal(undefined);
          expect((c as Container & { image: string }).image, `${name}: ${c.name}`).to.match(new RegExp(`:${known!.version}$`));
          expect(values.sidecars?.[known!.image]?.tag ?? known!.version).to.equal(known!.version);
          for (const arg of c.args ?? []) {
            const flag = /^--([a-z0-9-]+)/.exec(arg)?.[1];
            expect(known!.flags, `${name}: ${c.name} ${arg} (${known!.image} ${known!.version})`).to.include(flag);
          }
        }
      }
    }
  });

  it('validates every rendered object and every example against the Kubernetes schemas', () => {
    for (const [name, objects] of [...rendered, ...examples]) {
      for (const o of objects) {
        const k = KINDS[kindKey(o)];
        expect(k, `${name}: ${kindKey(o)} has no validator`).to.not.equal(undefined);
        expect(() => new k!.model(o as never).validate(), `${name}: ${o.kind}/${o.metadata.name}`).to.not.throw();
      }
    }
  });

  it('type-checks every object against the Kubernetes TypeScript types (unknown fields fail)', async () => {
    const lines: string[] = [];
    let i = 0;
    for (const [, objects] of [...rendered, ...examples]) {
      for (const o of objects) lines.push(`export const o${i++}: ${KINDS[kindKey(o)]!.type} = ${JSON.stringify(o)};`);
    }
    // A deliberately wrong object proves the check can fail.
    const probe = `export const wrong: import('kubernetes-types/storage/v1').StorageClass = { apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', metadata: { name: 'x' }, provisioner: 'x', volumeBindingModes: 'Immediate' };`;
    const check = async (source: string) => {
      const file = path.join(ROOT, 'test/chart/.rendered-objects.ts');
      await fs.writeFile(file, source);
      try {
        await exec(path.join(ROOT, 'node_modules/.bin/tsc'), [
          '--noEmit',
          '--strict',
          '--skipLibCheck',
          '--types',
          'node',
          '--module',
          'ES2022',
          '--moduleResolution',
          'Bundler',
          '--target',
          'ES2022',
          file,
        ]);
        return '';
      } catch (err) {
        return (err as { stdout: string }).stdout;
      } finally {
        await fs.rm(file, { force: true });
      }
    };
    expect(await check(lines.join('\n'))).to.equal('');
    expect(await check(probe)).to.contain("'volumeBindingModes' does not exist");
  });

  it("gives every berth container arguments the driver's own flag parser accepts", () => {
    for (const [name, objects] of rendered) {
      for (const o of objects.filter((x): x is Workload => x.kind === 'DaemonSet' || x.kind === 'Deployment')) {
        for (const c of o.spec.template.spec.containers.filter((x) => x.name === 'berth')) {
          const args = (c.args ?? []).map((a) => a.replace(/\$\([A-Z_]+\)/g, 'node-1'));
          expect(() => parseFlags(args, {}), `${name}: ${o.metadata.name}`).to.not.throw();
          expect(parseFlags(args, {}).mode).to.equal(
            o.kind === 'Deployment' ? 'controller' : o.metadata.name.endsWith('-local') ? 'local' : 'node',
          );
        }
      }
    }
  });

  it('serves metrics from every berth container: the flag, a named port, a headless Service per component, ServiceMonitor and dashboard on demand', async () => {
    for (const [name, objects] of rendered) {
      const on = name !== 'metrics off';
      const workloads = objects.filter((x): x is Workload => x.kind === 'DaemonSet' || x.kind === 'Deployment');
      const services = objects.filter((o) => o.kind === 'Service') as Array<
        K8sObject & { spec: { clusterIP: string; selector: Record<string, string>; ports: Array<{ port: number; targetPort: string }> } }
      >;
      for (const w of workloads.filter((x) => x.metadata.name !== 'berth-flex-installer')) {
        const berth = w.spec.template.spec.containers.find((c) => c.name === 'berth') as Container & {
          ports: Array<{ name: string; containerPort: number }>;
        };
        const flags = parseFlags(
          (berth.args ?? []).map((a) => a.replace(/\$\([A-Z_]+\)/g, 'node-1')),
          {},
        );
        const port = w.metadata.name.endsWith('-local') ? 9811 : 9810;
        expect(flags.metricsAddress, `${name}: ${w.metadata.name}`).to.equal(on ? `:${port}` : '');
        expect(berth.ports.some((p) => p.name === 'metrics' && p.containerPort === port)).to.equal(on);
        const labels = (w.spec.template as unknown as { metadata: { labels: Record<string, string> } }).metadata.labels;
        const selecting = services.filter((svc) => Object.entries(svc.spec.selector).every(([k, v]) => labels[k] === v));
        expect(selecting.length, `${name}: one Service selects ${w.metadata.name}`).to.equal(on ? 1 : 0);
        if (on)
          expect(selecting[0]?.spec).to.deep.include({
            clusterIP: 'None',
            ports: [{ name: 'metrics', port, targetPort: 'metrics', protocol: 'TCP' }],
          });
      }
      if (!on) expect(services, name).to.deep.equal([]);
      const monitors = objects.filter((o) => o.kind === 'ServiceMonitor') as Array<
        K8sObject & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string }> } }
      >;
      expect(monitors.length, name).to.equal(name === 'monitoring on' ? 1 : 0);
      for (const m of monitors) {
        expect(m.metadata.labels).to.include({ release: 'kube-prometheus-stack' });
        const selected = services.filter((svc) =>
          Object.entries(m.spec.selector.matchLabels).every(([k, v]) => svc.metadata.labels?.[k] === v),
        );
        expect(selected.map((x) => x.metadata.name).sort()).to.deep.equal([
          'berth-controller-metrics',
          'berth-local-metrics',
          'berth-node-metrics',
        ]);
        expect(m.spec.endpoints.map((e) => e.port)).to.deep.equal(['metrics']);
      }
      const dashboards = objects.filter((o) => o.kind === 'ConfigMap') as Array<K8sObject & { data: Record<string, string> }>;
      expect(dashboards.length, name).to.equal(name === 'monitoring on' ? 1 : 0);
      for (const cm of dashboards) {
        expect(cm.metadata.labels).to.include({ grafana_dashboard: '1' });
        const file = await fs.readFile(path.join(CHART, 'dashboards/berth.json'), 'utf8');
        expect(JSON.parse(cm.data['berth.json'] as string)).to.deep.equal(JSON.parse(file));
      }
    }
  });

  it('gives the node plugin the directories of pre-mounted exports: the flag, and the host directory mounted at the same path', () => {
    const node = rendered
      .get('three-node cluster')!
      .find((o): o is Workload => o.kind === 'DaemonSet' && o.metadata.name.endsWith('-node'))!;
    const berth = node.spec.template.spec.containers.find((c) => c.name === 'berth')!;
    expect(
      parseFlags(
        (berth.args ?? []).map((a) => a.replace(/\$\([A-Z_]+\)/g, 'node-1')),
        {},
      ).mountedAtDirs,
    ).to.deep.equal(['/mnt/nas']);
    const mount = berth.volumeMounts!.find((m) => m.mountPath === '/mnt/nas')!;
    expect(mount.mountPropagation).to.equal('HostToContainer');
    expect(node.spec.template.spec.volumes.find((v) => v.name === mount.name)?.hostPath?.path).to.equal('/mnt/nas');
  });

  it('lets the unprivileged controller use the reserved source ports secure NFS exports require, and nothing more', () => {
    const controller = rendered.get('three-node cluster')!.find((o): o is Workload => o.kind === 'Deployment')!;
    const pod = controller.spec.template.spec as unknown as {
      securityContext: { runAsNonRoot: boolean; sysctls: Array<{ name: string; value: string }> };
      containers: Array<Container & { securityContext?: { capabilities?: { drop?: string[]; add?: string[] }; runAsUser?: number } }>;
    };
    expect(pod.securityContext.runAsNonRoot).to.equal(true);
    expect(pod.securityContext.sysctls).to.deep.include({ name: 'net.ipv4.ip_unprivileged_port_start', value: '665' });
    const berth = pod.containers.find((c) => c.name === 'berth')!;
    expect(berth.securityContext?.capabilities).to.deep.equal({ drop: ['ALL'] });
  });

  it('agrees on socket paths: node plugin, kubelet registration, registrar and livenessprobe', () => {
    for (const [name, objects] of rendered) {
      const plugins = objects.filter(
        (o): o is Workload => o.kind === 'DaemonSet' && ['berth-node', 'berth-local'].includes(o.metadata.name),
      );
      expect(plugins.length, name).to.be.at.least(1);
      for (const ds of plugins) {
        const pod = ds.spec.template.spec;
        const berth = pod.containers.find((c) => c.name === 'berth')!;
        const flags = parseFlags(
          (berth.args ?? []).map((a) => a.replace(/\$\([A-Z_]+\)/g, 'node-1')),
          {},
        );
        const socket = socketPath(flags.endpoint);
        const kubeletDir = (MATRIX[name] as { kubeletDir?: string }).kubeletDir ?? '/var/lib/kubelet';
        expect(flags.kubeletDir, name).to.equal(kubeletDir);
        expect(flags.kubeletRegistrationPath, name).to.equal(socket);
        expect(socket.startsWith(`${kubeletDir}/plugins/`), name).to.equal(true);
        // The kubelet dir is mounted at the same path, with Bidirectional propagation.
        const kubeletMount = berth.volumeMounts!.find((m) => m.mountPath === kubeletDir)!;
        expect(kubeletMount.mountPropagation).to.equal('Bidirectional');
        expect(pod.volumes.find((v) => v.name === kubeletMount.name)!.hostPath!.path).to.equal(kubeletDir);
        // Sidecars reach the socket through the plugin dir mounted at /csi.
        const pluginDir = pod.volumes.find((v) => v.name === 'plugin-dir')!.hostPath!.path;
        expect(`${pluginDir}/csi.sock`, name).to.equal(socket);
        for (const c of pod.containers.filter((x) => x.name !== 'berth')) {
          const addr = c.args!.find((a) => a.startsWith('--csi-address='))!.split('=')[1]!;
          const mount = c.volumeMounts!.find((m) => addr.startsWith(`${m.mountPath}/`))!;
          expect(mount.name, `${name}: ${c.name}`).to.equal('plugin-dir');
          expect(path.join(pluginDir, path.relative(mount.mountPath, addr)), `${name}: ${c.name}`).to.equal(socket);
          if (c.name === 'node-driver-registrar') {
            expect(c.args).to.include(`--kubelet-registration-path=${socket}`);
            expect(flags.selfRegister).to.equal(false);
          }
        }
        const registrarVol = pod.volumes.find((v) => v.name === 'registration-dir')!;
        expect(registrarVol.hostPath!.path).to.equal(`${kubeletDir}/plugins_registry`);
      }
    }
  });

  it('renders StorageClasses the driver accepts: local ones bound at first consumer, expandable for block', () => {
    const classes = [...rendered.get('defaults')!, ...rendered.get('three-node cluster')!, ...[...examples.values()].flat()].filter(
      (o) => o.kind === 'StorageClass',
    ) as Array<K8sObject & { parameters: Record<string, string>; volumeBindingMode: string; allowVolumeExpansion: boolean }>;
    expect(classes.length).to.be.greaterThan(3);
    for (const sc of classes) {
      // The external-provisioner strips csi.storage.k8s.io/* keys before CreateVolume.
      const params = Object.fromEntries(Object.entries(sc.parameters).filter(([k]) => !k.startsWith('csi.storage.k8s.io/')));
      expect(() => parseParameters(params), sc.metadata.name).to.not.throw();
      expect(sc.volumeBindingMode, sc.metadata.name).to.equal(sc.parameters.pool === 'nfs' ? 'Immediate' : 'WaitForFirstConsumer');
      expect(sc.allowVolumeExpansion, sc.metadata.name).to.equal(sc.parameters.kind === 'block');
    }
  });

  const podsOf = (objects: K8sObject[]) =>
    objects
      .filter((x): x is Workload => x.kind === 'DaemonSet' || x.kind === 'Deployment')
      .map((w) => ({ name: w.metadata.name, pod: w.spec.template.spec as unknown as PodSpec }));

  it('admits every pod as the kubelet would: under runAsNonRoot, each container runs as a non-zero uid', () => {
    for (const [name, objects] of rendered) {
      for (const { name: workload, pod } of podsOf(objects)) {
        for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
          expect(runAsNonRootRefusal(pod, c), `${name}: ${workload}`).to.equal(undefined);
        }
      }
    }
    // The rule itself, on the controller pod as the chart had it: only berth's container set a user.
    const before: PodSpec = {
      securityContext: { runAsNonRoot: true },
      containers: [
        { name: 'berth', image: `${IMAGE_REPOSITORY}:0.1.0`, securityContext: { runAsUser: 65532 } },
        { name: 'csi-provisioner', image: 'registry.k8s.io/sig-storage/csi-provisioner:v6.3.0' },
      ],
    };
    expect(runAsNonRootRefusal(before, before.containers[0]!)).to.equal(undefined);
    expect(runAsNonRootRefusal(before, before.containers[1]!)).to.contain('image will run as root');
  });

  it('runs the node plugins on the host network with cluster DNS, no two containers of a node on one port', () => {
    for (const [name, objects] of rendered) {
      const owner = new Map<string, string>();
      for (const { name: workload, pod } of podsOf(objects).filter((p) => /-(node|local)$/.test(p.name))) {
        expect(pod.hostNetwork, `${name}: ${workload}`).to.equal(true);
        expect(pod.dnsPolicy, `${name}: ${workload}`).to.equal('ClusterFirstWithHostNet');
        const berth = pod.containers.find((c) => c.name === 'berth')!;
        const probe = pod.containers.find((c) => c.name === 'liveness-probe')!;
        const healthz = berth.ports?.find((p) => p.name === 'healthz')?.containerPort;
        expect(probe.args, `${name}: ${workload}'s livenessprobe serves the port its liveness check asks`).to.include(
          `--health-port=${healthz}`,
        );
        const ports = new Set<string>();
        for (const c of pod.containers) {
          for (const p of c.ports ?? []) ports.add(`${p.containerPort}`);
          for (const a of c.args ?? []) {
            const m = /^--(?:health-port=|metrics-address=:|http-endpoint=:)(\d+)$/.exec(a);
            if (m) ports.add(m[1]!);
          }
        }
        for (const p of ports) {
          expect(owner.get(p), `${name}: port ${p} of ${workload} is also taken on the node by`).to.equal(undefined);
          owner.set(p, workload);
        }
      }
    }
  });

  it('gives every container cpu and memory requests and a memory limit, settable in values', async () => {
    for (const [name, objects] of rendered) {
      for (const { name: workload, pod } of podsOf(objects)) {
        for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
          const r = c.resources ?? {};
          expect(r.requests, `${name}: ${workload}/${c.name}`).to.have.keys('cpu', 'memory');
          expect(r.limits, `${name}: ${workload}/${c.name}`).to.have.property('memory');
        }
      }
    }
    const f = await valuesFile(dir, 'resources', {
      controller: { resources: { requests: { cpu: '1', memory: '1Gi' }, limits: { memory: '2Gi' } } },
    });
    const { stdout } = await exec(HELM, ['template', 'berth', CHART, '-f', f]);
    const controller = podsOf(parseDocs(stdout)).find((p) => p.name === 'berth-controller')!;
    expect(controller.pod.containers.find((c) => c.name === 'berth')?.resources).to.deep.equal({
      requests: { cpu: '1', memory: '1Gi' },
      limits: { memory: '2Gi' },
    });
  });

  it('refuses to render until image.repository names where berth was pushed, saying how to get there', async () => {
    const f = await valuesFile(dir, 'no-image', {}, false);
    const err = await exec(HELM, ['template', 'berth', CHART, '-f', f]).then(
      () => '',
      (e: { stderr: string }) => e.stderr,
    );
    expect(err).to.contain('image.repository is not set').and.contain('Dockerfile');
  });

  it('values.schema.json rejects bad values', async () => {
    const bad: Array<[object, RegExp]> = [
      [{ mode: 'split' }, /mode/],
      [{ localPools: { enabled: false } }, /localPools.enabled is false/],
      [{ storageClasses: [{ name: 'x', pool: 'local', kind: 'tape' }] }, /kind must be one of/],
      [{ kubeletDir: 'relative/path' }, /kubeletDir/],
      [{ node: { maxVolumesPerNode: -1 } }, /maxVolumesPerNode/],
      [{ colour: 'blue' }, /colour/],
    ];
    for (const [values, message] of bad) {
      const f = await valuesFile(dir, 'bad', values);
      const err = await exec(HELM, ['template', 'berth', CHART, '-f', f]).then(
        () => '',
        (e: { stderr: string }) => e.stderr,
      );
      expect(err, JSON.stringify(values)).to.match(message);
    }
  });

  it('passes yamllint: values, examples and rendered output', async () => {
    const rendered = (await fs.readdir(dir)).filter((f) => f.endsWith('.rendered.yaml')).map((f) => path.join(dir, f));
    expect(rendered, 'the template tests wrote their output').to.not.be.empty;
    const targets = [path.join(CHART, 'values.yaml'), path.join(ROOT, 'examples'), ...rendered];
    const config =
      '{extends: default, rules: {line-length: disable, document-start: disable, comments: {min-spaces-from-content: 1}, indentation: {indent-sequences: whatever}}}';
    await exec('yamllint', ['-s', '-d', config, ...targets]);
  });
});
