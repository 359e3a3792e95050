// The FlexVolume call protocol (kubernetes pkg/volume/flexvolume): the reply
// is one JSON object, and the kubelet parses stdout and stderr together, so
// nothing else may ever be printed.

export type Status = 'Success' | 'Failure' | 'Not supported';

export interface Reply {
  status: Status;
  message?: string;
  device?: string;
  volumeName?: string;
  attached?: boolean;
  capabilities?: Record<string, boolean>;
}

export class FlexFailure extends Error {}

export const success = (extra: Omit<Reply, 'status'> = {}): Reply => ({ status: 'Success', ...extra });

/** Every call the kubelet (or controller-manager) may make of a FlexVolume driver. */
export const FLEX_COMMANDS = new Set([
  'init',
  'getvolumename',
  'attach',
  'waitforattach',
  'isattached',
  'detach',
  'mountdevice',
  'unmountdevice',
  'mount',
  'unmount',
  'expandvolume',
  'expandfs',
]);

/** "Not supported" for a FlexVolume call this driver leaves to the kubelet; Failure for a word that is no call at all. */
export function notSupported(command: string): Reply {
  if (!FLEX_COMMANDS.has(command)) throw new FlexFailure(`unknown command "${command}"`);
  return { status: 'Not supported', message: `${command} is not supported by this driver` };
}

/** Options as the kubelet sends them: the PV's options merged over its own keys. */
export interface FlexOptions {
  [key: string]: string | undefined;
}

export const FS_TYPE = 'kubernetes.io/fsType';
export const READ_WRITE = 'kubernetes.io/readwrite';
export const PV_NAME = 'kubernetes.io/pvOrVolumeName';
export const FS_GROUP = 'kubernetes.io/mounterArgs.FsGroup';
export const SECRET_PREFIX = 'kubernetes.io/secret/';

export function parseOptions(json: string | undefined): FlexOptions {
  if (json === undefined || json === '') throw new FlexFailure('missing the JSON options argument');
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw new FlexFailure(`malformed JSON options: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new FlexFailure('the JSON options must be an object');
  const out: FlexOptions = {};
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new FlexFailure(`option "${k}" must be a string`);
    out[k] = v;
  }
  return out;
}

export function required(opts: FlexOptions, key: string): string {
  const v = opts[key];
  if (v === undefined || v === '') throw new FlexFailure(`missing option "${key}"`);
  return v;
}

/** The kubelet's `kubernetes.io/secret/<key>` values, base64-decoded. Never logged. */
export function secrets(opts: FlexOptions): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts)) {
    if (!k.startsWith(SECRET_PREFIX) || v === undefined) continue;
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw new FlexFailure(`secret "${k.slice(SECRET_PREFIX.length)}" is not base64`);
    out[k.slice(SECRET_PREFIX.length)] = Buffer.from(v, 'base64').toString('utf8');
  }
  return out;
}

export const readOnly = (opts: FlexOptions) => opts[READ_WRITE] === 'ro';

export function fsGroup(opts: FlexOptions): number | undefined {
  const v = opts[FS_GROUP];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new FlexFailure(`${FS_GROUP} must be a number`);
  return Number(v);
}
