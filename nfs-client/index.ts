// nfs-client: a userspace NFSv3 client (XDR, ONC RPC over TCP, PORTMAP,
// MOUNT v3, NFSv3) with a path-level API. Knows nothing of CSI.
export { NfsClient, type NfsClientOptions } from './client.js';
export { MountError, NFS3ERR, Nfs3Error } from './errors.js';
export { type ExportEntry, Mount3 } from './mount3.js';
export {
  ACCESS,
  type DirEntryPlus,
  type Fattr3,
  type FileHandle,
  FileType,
  type FsInfo,
  type FsStat,
  Nfs3,
  type Sattr3,
  StableHow,
} from './nfs3.js';
export { getPort } from './portmap.js';
export { type AuthSys, RpcClient, RpcError, RpcTransportError, type SourcePort } from './rpc.js';
export { XdrError, XdrReader, XdrWriter } from './xdr.js';
