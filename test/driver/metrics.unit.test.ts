// The pure parts of the metrics endpoint and `berth-ctl status`: gRPC code
// names as csi-lib-utils labels them, the listen address, the status tables.
import { expect } from 'chai';
import { formatStatus, humanBytes } from '../../cli/status-table.js';
import { CachedScan, within } from '../../controller/pool-usage.js';
import { FlagError, parseListenAddress } from '../../driver/flags.js';
import { DriverMetrics, type DriverReport, grpcCodeName } from '../../driver/metrics.js';
import { Code } from '../../volume/errors.js';

describe('metrics and status', () => {
  it("names gRPC codes as Go's codes.Code.String() does (csi-lib-utils' grpc_status_code)", () => {
    expect(grpcCodeName(Code.OK)).to.equal('OK');
    expect(grpcCodeName(Code.CANCELLED)).to.equal('Canceled');
    expect(grpcCodeName(Code.INVALID_ARGUMENT)).to.equal('InvalidArgument');
    expect(grpcCodeName(Code.RESOURCE_EXHAUSTED)).to.equal('ResourceExhausted');
    expect(grpcCodeName(Code.DEADLINE_EXCEEDED)).to.equal('DeadlineExceeded');
    expect(grpcCodeName(Code.UNAVAILABLE)).to.equal('Unavailable');
    expect(grpcCodeName(Code.DATA_LOSS)).to.equal('DataLoss');
    expect(grpcCodeName(99)).to.equal('Code(99)');
  });

  it('parses host:port, [v6]:port and :port, and refuses anything else', () => {
    expect(parseListenAddress('127.0.0.1:9810')).to.deep.equal({ host: '127.0.0.1', port: 9810 });
    expect(parseListenAddress('[::1]:9810')).to.deep.equal({ host: '::1', port: 9810 });
    expect(parseListenAddress(':9810')).to.deep.equal({ host: undefined, port: 9810 });
    expect(parseListenAddress('localhost:1')).to.deep.equal({ host: 'localhost', port: 1 });
    for (const bad of ['9810', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', 'a b:1', '::1:9810', 'http://x:1']) {
      expect(() => parseListenAddress(bad), bad).to.throw(FlagError, /must be host:port/);
    }
  });

  it('prints sizes with three significant digits', () => {
    expect(humanBytes(0)).to.equal('0 B');
    expect(humanBytes(1023)).to.equal('1023 B');
    expect(humanBytes(1536)).to.equal('1.50 KiB');
    expect(humanBytes(48 * 1024 * 1024)).to.equal('48.0 MiB');
    expect(humanBytes(300 * 1024 ** 3)).to.equal('300 GiB');
    expect(humanBytes(undefined)).to.equal('-');
  });

  it('prints pools, NFS servers and abnormal volumes as aligned tables, an unreadable pool with its reason', () => {
    const kinds = (share: number, block: number) => ({
      share: { volumes: share, provisionedBytes: share * 1024 ** 2, allocatedBytes: undefined },
      block: { volumes: block, provisionedBytes: block * 1024 ** 3, allocatedBytes: 512 * 1024 ** 2 },
    });
    const report: DriverReport = {
      driver: 'berth.csi.dev',
      version: '0.1.0',
      mode: 'all',
      nodeId: 'n1',
      at: '2026-12-02T00:00:00.000Z',
      pools: [
        {
          pool: 'local/n1',
          type: 'local',
          usage: { totalBytes: 10 * 1024 ** 3, freeBytes: 4 * 1024 ** 3, kinds: kinds(2, 3), snapshots: { count: 1, allocatedBytes: 0 } },
        },
        { pool: '10.0.0.5:/export', type: 'nfs', error: 'NFS server 10.0.0.5:/export (fsstat): connection refused' },
      ],
      nfsServers: [{ server: '10.0.0.5', reachable: false, seconds: 0.0012, error: 'connect ECONNREFUSED' }],
      node: { staged: 2, published: 1, abnormal: [{ volumeId: 'local:n1:block:v', reason: 'not_mounted', message: '/x is not mounted' }] },
    };
    const lines = formatStatus(report).split('\n');
    expect(lines[0]).to.equal('berth 0.1.0: berth.csi.dev, mode all, node n1 (read 2026-12-02T00:00:00.000Z)');
    expect(lines[2]).to.match(/^POOL\s+TYPE\s+SIZE\s+FREE\s+PROMISED\s+ALLOCATED\s+SHARE\/BLOCK\s+SNAPSHOTS$/);
    // A share's allocation unknown: the pool's total is unknown, not understated.
    expect(lines[3]).to.match(/^local\/n1\s+local\s+10\.0 GiB\s+4\.00 GiB\s+3\.00 GiB\s+-\s+2\/3\s+1$/);
    expect(lines[4]).to.match(/^10\.0\.0\.5:\/export\s+nfs\s+unreadable: NFS server .* connection refused$/);
    expect(lines[2]?.indexOf('TYPE')).to.equal(lines[3]?.indexOf('local '));
    expect(
      lines.some((l) => /^10\.0\.0\.5\s+NO\s+1\.2 ms\s+connect ECONNREFUSED$/.test(l)),
      lines.join('\n'),
    ).to.equal(true);
    expect(lines).to.include('node n1: 2 staged, 1 published, 1 abnormal');
    expect(
      lines.some((l) => /^local:n1:block:v\s+not_mounted\s+\/x is not mounted$/.test(l)),
      lines.join('\n'),
    ).to.equal(true);
  });

  it('reuses a young scan, shares one still running however old, and scans again after a failure', async () => {
    let scans = 0;
    let release: (() => void) | undefined;
    const scan = new CachedScan(() => {
      scans++;
      if (scans === 1) return new Promise<number>((resolve) => (release = () => resolve(1)));
      if (scans === 2) return Promise.reject(new Error('disk gone'));
      return Promise.resolve(scans);
    }, 20);
    const first = scan.get();
    await new Promise((r) => setTimeout(r, 40));
    expect(scan.get(), 'a stuck scan is shared, not started again').to.equal(first);
    expect(scans).to.equal(1);
    release?.();
    expect(await first).to.equal(1);
    expect(await scan.get(), 'young: reused').to.equal(1);
    await new Promise((r) => setTimeout(r, 40));
    await scan.get().catch((err: Error) => expect(err.message).to.equal('disk gone'));
    expect(await scan.get(), 'a failed scan is not reused').to.equal(3);
  });

  it('answers a scrape without the part that hangs: the node checks said late, the pools and servers still there', async () => {
    const late = await within(10, 'x', new Promise(() => undefined)).catch((err: Error) => err.message);
    expect(late).to.equal('x did not answer within 10 ms');
    const hung = new Promise<never>(() => undefined);
    const metrics = new DriverMetrics(
      { driver: 'berth.csi.dev', version: '0', mode: 'all', nodeId: 'n1' },
      { pools: async () => [{ pool: 'local/n1', type: 'local', error: 'x' }], nfsServers: async () => [], node: () => hung },
      50,
    );
    const started = Date.now();
    const report = await metrics.report();
    expect(Date.now() - started).to.be.below(1000);
    expect(report.node).to.equal(undefined);
    expect(report.nodeError).to.equal("this node's volume checks did not answer within 50 ms");
    expect(report.pools).to.have.length(1);
    expect(formatStatus(report)).to.contain("node n1: not checked: this node's volume checks did not answer within 50 ms");
    const text = await metrics.exposition();
    expect(text).to.match(/^berth_pool_up\{pool="local\/n1",type="local"\} 0$/m);
    expect(text).not.to.match(/^berth_node_staged_volumes /m);
  });
});
