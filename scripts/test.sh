#!/usr/bin/env bash
# npm test: everything, on a fresh Debian 12 or Ubuntu machine as root.
#   1. the Debian packages the tests need (installed when missing)
#   2. node modules (npm ci when there are none)
#   3. format and lint (Biome), a fresh build (tsc, strict)
#   4. the fast tier: *.unit.test.ts, no root, no servers, no mounts
#   5. the root tier: real loop devices, mkfs, mounts, nfs-ganesha, Helm,
#      inside a private mount namespace so that no mount outlives the run
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "npm test: the root tier needs root (real loop devices and mounts); as another user run: npm run test:unit" >&2
  exit 1
fi
bash scripts/install-test-deps.sh
if [ ! -x node_modules/.bin/tsc ]; then
  echo "npm test: no node modules yet: npm ci"
  npm ci --no-audit --no-fund
fi
# Modules installed before the addon existed: build it as `npm ci` would.
[ -f native/build/Release/berth_sys.node ] || npm run install --silent
npm run lint --silent
npm run build --silent
npx mocha 'dist/test/**/*.unit.test.js'
unshare --mount --propagation private npx mocha --ignore 'dist/test/**/*.unit.test.js' --ignore 'dist/test/**/*.kernel.test.js' 'dist/test/**/*.test.js'
# The kernel tier: one VM (Debian's kernel under qemu, built and cached by
# scripts/kernel-vm/build.sh) runs every *.kernel.test.ts with a real NFS
# client, device-mapper, quotas and online growth.
npm run test:kernel --silent
