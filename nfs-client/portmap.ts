// PORTMAP v2 (RFC 1833): which TCP port a program listens on.
import { RpcClient, RpcError } from './rpc.js';
import { XdrWriter } from './xdr.js';

export const PMAP_PROG = 100000;
const PMAP_VERS = 2;
const PMAPPROC_GETPORT = 3;
const IPPROTO_TCP = 6;

export async function getPort(host: string, prog: number, vers: number, opts: { port?: number; timeoutMs?: number } = {}): Promise<number> {
  const rpc = new RpcClient({ host, port: opts.port ?? 111, timeoutMs: opts.timeoutMs ?? 10_000 });
  try {
    const args = new XdrWriter().uint32(prog).uint32(vers).uint32(IPPROTO_TCP).uint32(0).toBuffer();
    const port = (await rpc.call(PMAP_PROG, PMAP_VERS, PMAPPROC_GETPORT, args, 'PORTMAP GETPORT')).uint32();
    if (port === 0) throw new RpcError(`program ${prog} v${vers} is not registered on ${host}`, 'PROG_UNAVAIL');
    return port;
  } finally {
    rpc.close();
  }
}
