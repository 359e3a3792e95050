// nfs-client: a userspace NFSv3 client (XDR, ONC RPC over TCP, PORTMAP,
// MOUNT v3, NFSv3) with a path-level API. Knows nothing of CSI.
export { NfsClient, type NfsClientOptions } from './client.js';
export { Nfs3, FileType, StableHow, ACCESS, type Fattr3, type FileHandle, type DirEntryPlus, type FsStat, type FsInfo, type Sattr3 } from './nfs3.js';
export { Mount3, type ExportEntry } from './mount3.js';
export { getPort } from './portmap.js';
export { RpcClient, RpcError, RpcTransportError, type AuthSys } from './rpc.js';
export { Nfs3Error, NFS3ERR, MountError } from './errors.js';
export { XdrReader, XdrWriter, XdrError } from './xdr.js';
