// A stand-in for the Kubernetes API server (none can run on these machines):
// HTTPS with its own CA, a bearer token, and the storage.k8s.io/v1 CSINode
// resource as the kubelet keeps it (kubernetes pkg/volume/csi/nodeinfomanager:
// one CSINode per node, spec.drivers[] with name, nodeID, topologyKeys and
// allocatable.count). It writes a kubeconfig that reaches it, checks the
// token on every request and answers 401 otherwise, as the real one does.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';

const exec = promisify(execFile);

export interface CsiNodeDriver {
  name: string;
  nodeID: string;
  topologyKeys?: string[];
  allocatable?: { count: number };
}

export class StandInApiServer {
  /** Every request path served, for tests that check what the driver asked. */
  readonly requests: string[] = [];
  private readonly csiNodes = new Map<string, CsiNodeDriver[]>();
  private down = false;

  private constructor(
    readonly dir: string,
    private readonly server: https.Server,
    readonly kubeconfig: string,
  ) {}

  static async start(): Promise<StandInApiServer> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-apiserver-'));
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    await exec('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=stand-in-kube-apiserver',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    const token = randomBytes(16).toString('hex');
    let self: StandInApiServer | undefined;
    const server = https.createServer({ key: await fs.readFile(key), cert: await fs.readFile(cert) }, (req, res) => {
      self?.answer(req.url ?? '', req.headers.authorization, token, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const kubeconfig = path.join(dir, 'kubeconfig');
    await fs.writeFile(
      kubeconfig,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'stand-in',
            cluster: {
              server: `https://127.0.0.1:${port}`,
              'certificate-authority-data': (await fs.readFile(cert)).toString('base64'),
            },
          },
        ],
        users: [{ name: 'berth-controller', user: { token } }],
        contexts: [{ name: 'stand-in', context: { cluster: 'stand-in', user: 'berth-controller' } }],
        'current-context': 'stand-in',
      }),
      { mode: 0o600 },
    );
    self = new StandInApiServer(dir, server, kubeconfig);
    return self;
  }

  /** What the kubelet writes when a driver registers on `node` (one entry per driver). */
  setDriver(node: string, driver: CsiNodeDriver): void {
    const drivers = (this.csiNodes.get(node) ?? []).filter((d) => d.name !== driver.name);
    this.csiNodes.set(node, [...drivers, driver]);
  }

  /** What the kubelet does when a driver deregisters, or the node is deleted. */
  removeDriver(node: string, name: string): void {
    this.csiNodes.set(
      node,
      (this.csiNodes.get(node) ?? []).filter((d) => d.name !== name),
    );
  }

  /** Makes every request fail with 503, as an API server that is down behind its load balancer. */
  setDown(down: boolean): void {
    this.down = down;
  }

  private csiNode(name: string, drivers: CsiNodeDriver[]) {
    return { apiVersion: 'storage.k8s.io/v1', kind: 'CSINode', metadata: { name }, spec: { drivers } };
  }

  private answer(url: string, authorization: string | undefined, token: string, res: import('node:http').ServerResponse): void {
    this.requests.push(url);
    const [status, body] = this.route(url, authorization === `Bearer ${token}`);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private route(url: string, authorized: boolean): [number, object] {
    const failure = (code: number, reason: string): [number, object] => [code, { kind: 'Status', status: 'Failure', reason, code }];
    if (!authorized) return failure(401, 'Unauthorized');
    if (this.down) return failure(503, 'ServiceUnavailable');
    const route = /^\/apis\/storage\.k8s\.io\/v1\/csinodes(?:\/([^/?]+))?(?:\?.*)?$/.exec(url);
    if (!route) return failure(404, 'NotFound');
    const name = route[1];
    if (name) {
      const drivers = this.csiNodes.get(name);
      return drivers ? [200, this.csiNode(name, drivers)] : failure(404, 'NotFound');
    }
    const items = [...this.csiNodes].map(([n, drivers]) => this.csiNode(n, drivers));
    return [200, { apiVersion: 'storage.k8s.io/v1', kind: 'CSINodeList', metadata: { resourceVersion: '1' }, items }];
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}
