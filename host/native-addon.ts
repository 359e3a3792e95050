// Where `npm ci` builds the berth_sys addon (node-gyp, native/binding.gyp),
// seen from this module in dist/host. Kept apart from native.ts so that the
// FlexVolume bundle, which carries no addon, has no import.meta in it.
import { fileURLToPath } from 'node:url';

export const BUILT_ADDON = fileURLToPath(new URL('../../native/build/Release/berth_sys.node', import.meta.url));
