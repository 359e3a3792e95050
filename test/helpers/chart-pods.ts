// The chart's berth pods, run with podman the way the kubelet would run
// them: the chart rendered by the real Helm (helm template), and each berth
// container of a pod turned into `podman run` with its hostPath volumes and
// their mount propagation (Bidirectional is rshared, HostToContainer
// rslave), emptyDirs (one directory per pod, given the pod's fsGroup), its
// securityContext (privileged, runAsUser/Group, readOnlyRootFilesystem,
// dropped capabilities, allowPrivilegeEscalation), hostNetwork, env with
// fieldRef values, and its args with $(VAR) expanded. The service account
// token the kubelet mounts is a STAND-IN's (StandInApiServer): no API server
// runs here. The sidecars' images cannot be pulled, so the tests play them.
//
// A pod without hostNetwork gets the host's network too (no pod network
// here); its namespaced sysctls, which need a network of its own, are not set.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments, parse as parseYaml, stringify } from 'yaml';
import { podman } from './berth-image.js';

const exec = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const HELM = path.join(ROOT, '.tools/helm-v3.18.0/helm');

type SecurityContext = {
  privileged?: boolean;
  runAsNonRoot?: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  fsGroup?: number;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
};
type EnvVar = { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } };
export type ChartContainer = {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  securityContext?: SecurityContext;
  volumeMounts?: Array<{ name: string; mountPath: string; mountPropagation?: string; readOnly?: boolean }>;
};
export type ChartPodSpec = {
  hostNetwork?: boolean;
  securityContext?: SecurityContext;
  containers: ChartContainer[];
  initContainers?: ChartContainer[];
  volumes: Array<{ name: string; hostPath?: { path: string; type?: string }; emptyDir?: object }>;
};
export type Workload = { kind: string; metadata: { name: string; namespace?: string }; spec: { template: { spec: ChartPodSpec } } };

/** The chart rendered with `values` (scripts/fetch-helm.sh pins Helm). */
export async function renderChart(dir: string, values: object): Promise<Workload[]> {
  await exec('bash', [path.join(ROOT, 'scripts/fetch-helm.sh')]);
  const file = path.join(dir, `values-${randomBytes(4).toString('hex')}.yaml`);
  await fs.writeFile(file, stringify(values));
  const { stdout } = await exec(HELM, ['template', 'berth', path.join(ROOT, 'charts/berth'), '--namespace', 'kube-system', '-f', file]);
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as Workload | null)
    .filter((o): o is Workload => o !== null && (o.kind === 'DaemonSet' || o.kind === 'Deployment'));
}

/** The service account the kubelet mounts in a pod, here for a stand-in API server's kubeconfig. */
export interface ServiceAccount {
  kubeconfig: string;
}

export interface PodPlacement {
  /** spec.nodeName */
  nodeName: string;
  /** Where this pod's emptyDirs and service account files go. */
  dir: string;
  serviceAccount?: ServiceAccount;
}

/** The kubelet's refusal of a runAsNonRoot container without a non-zero uid, as an error. */
function checkRunAsNonRoot(pod: ChartPodSpec, c: ChartContainer, uid: number | undefined): void {
  if ((c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot) && !uid)
    throw new Error(`the kubelet refuses container ${c.name}: it has runAsNonRoot and would run as root`);
}

/** `podman run` arguments for container `name` of `workload`, placed on a node as the kubelet would. */
export async function podmanRunArgs(workload: Workload, name: string, at: PodPlacement, containerName: string): Promise<string[]> {
  const pod = workload.spec.template.spec;
  const c = [...pod.containers, ...(pod.initContainers ?? [])].find((x) => x.name === name);
  if (!c) throw new Error(`${workload.metadata.name} has no container ${name}`);
  const sc = { ...pod.securityContext, ...c.securityContext };
  const args = ['run', '-d', '--name', containerName, '--network', 'host'];
  if (sc.privileged) args.push('--privileged');
  checkRunAsNonRoot(pod, c, sc.runAsUser);
  if (sc.runAsUser !== undefined) args.push('--user', `${sc.runAsUser}:${sc.runAsGroup ?? sc.runAsUser}`);
  if (pod.securityContext?.fsGroup !== undefined) args.push('--group-add', String(pod.securityContext.fsGroup));
  if (sc.readOnlyRootFilesystem) args.push('--read-only');
  for (const cap of sc.capabilities?.drop ?? []) args.push('--cap-drop', cap.toLowerCase());
  for (const cap of sc.capabilities?.add ?? []) args.push('--cap-add', cap.toLowerCase());
  if (sc.allowPrivilegeEscalation === false) args.push('--security-opt', 'no-new-privileges');

  const fields: Record<string, string> = {
    'spec.nodeName': at.nodeName,
    'metadata.name': `${workload.metadata.name}-${at.nodeName}`,
    'metadata.namespace': workload.metadata.namespace ?? 'kube-system',
  };
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const value = e.value ?? (e.valueFrom?.fieldRef ? fields[e.valueFrom.fieldRef.fieldPath] : undefined);
    if (value === undefined) throw new Error(`env ${e.name}: only values and fieldRefs are played here`);
    env[e.name] = value;
  }
  if (at.serviceAccount) Object.assign(env, await mountServiceAccount(args, at, fields['metadata.namespace'] as string));
  for (const [k, v] of Object.entries(env)) args.push('-e', `${k}=${v}`);

  for (const m of c.volumeMounts ?? []) {
    const v = pod.volumes.find((x) => x.name === m.name);
    let source: string;
    if (v?.hostPath) {
      source = v.hostPath.path;
      if (v.hostPath.type === 'DirectoryOrCreate') await fs.mkdir(source, { recursive: true, mode: 0o755 });
      else if (v.hostPath.type === 'Directory' && !(await fs.stat(source)).isDirectory())
        throw new Error(`hostPath ${source} is no directory`);
    } else if (v?.emptyDir) {
      source = path.join(at.dir, 'empty-dirs', m.name);
      await fs.mkdir(source, { recursive: true });
      // The kubelet gives an emptyDir to the pod's fsGroup, setgid.
      if (pod.securityContext?.fsGroup !== undefined) {
        await fs.chown(source, 0, pod.securityContext.fsGroup);
        await fs.chmod(source, 0o2777);
      }
    } else throw new Error(`volume ${m.name}: only hostPath and emptyDir are played here`);
    const propagation = { Bidirectional: 'rshared', HostToContainer: 'rslave' }[m.mountPropagation ?? ''];
    const options = [m.readOnly ? 'ro' : '', propagation ?? ''].filter(Boolean).join(',');
    args.push('-v', `${source}:${m.mountPath}${options ? `:${options}` : ''}`);
  }
  const expand = (a: string) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, k: string) => env[k] ?? all);
  if (c.command) args.push('--entrypoint', c.command[0] as string);
  args.push(c.image, ...(c.command?.slice(1) ?? []), ...(c.args ?? []).map(expand));
  return args;
}

/** What the kubelet mounts for a pod's service account, from a stand-in API server's kubeconfig. */
async function mountServiceAccount(args: string[], at: PodPlacement, namespace: string): Promise<Record<string, string>> {
  const config = parseYaml(await fs.readFile(at.serviceAccount!.kubeconfig, 'utf8')) as {
    clusters: Array<{ cluster: { server: string; 'certificate-authority-data'?: string; 'certificate-authority'?: string } }>;
    users: Array<{ user: { token: string } }>;
  };
  const cluster = config.clusters[0]!.cluster;
  const dir = path.join(at.dir, 'serviceaccount');
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const ca = cluster['certificate-authority-data']
    ? Buffer.from(cluster['certificate-authority-data'], 'base64')
    : await fs.readFile(cluster['certificate-authority'] as string);
  await fs.writeFile(path.join(dir, 'ca.crt'), ca, { mode: 0o644 });
  await fs.writeFile(path.join(dir, 'token'), config.users[0]!.user.token, { mode: 0o644 });
  await fs.writeFile(path.join(dir, 'namespace'), namespace, { mode: 0o644 });
  args.push('-v', `${dir}:/var/run/secrets/kubernetes.io/serviceaccount:ro`);
  const url = new URL(cluster.server);
  return { KUBERNETES_SERVICE_HOST: url.hostname, KUBERNETES_SERVICE_PORT: url.port };
}

/** One container of a chart pod, running under podman; stopped and removed by name. */
export class ChartPod {
  private constructor(readonly name: string) {}

  static async start(workload: Workload, container: string, at: PodPlacement): Promise<ChartPod> {
    const name = `berth-pod-${container}-${randomBytes(4).toString('hex')}`;
    await podman(await podmanRunArgs(workload, container, at, name));
    return new ChartPod(name);
  }

  async logs(): Promise<string> {
    const { stdout, stderr } = await podman(['logs', this.name]);
    return stdout + stderr;
  }

  async exec(command: string[]): Promise<string> {
    return (await podman(['exec', this.name, ...command])).stdout;
  }

  /** Waits for `file` (a socket the container makes) on the host. */
  async waitFor(file: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (
      !(await fs.stat(file).then(
        () => true,
        () => false,
      ))
    ) {
      if (Date.now() > deadline) throw new Error(`${file} did not appear: ${await this.logs()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM, as the kubelet stops a container, then removal. */
  async stop(): Promise<void> {
    await podman(['stop', '-t', '15', this.name]).catch(() => undefined);
    await podman(['rm', '-f', this.name]).catch(() => undefined);
  }
}
