#!/usr/bin/env bash
# Installs the Debian packages the tests need, when they are missing, and
# says what it installs. Used by `npm test` and by .ci/run. On a machine that
# has them all it changes nothing and takes a few milliseconds.
set -euo pipefail

# package: what the tests use it for
PACKAGES=(
  python3 make g++  # node-gyp builds the berth_sys addon in `npm ci` (Node's headers come with nodejs)
  util-linux        # losetup, unshare, blkid, blockdev, fsfreeze
  mount             # mount, umount
  e2fsprogs         # mkfs.ext4, resize2fs, e2fsck, dumpe2fs
  xfsprogs          # mkfs.xfs, xfs_growfs, xfs_info
  btrfs-progs       # mkfs.btrfs, btrfs filesystem resize
  nfs-ganesha       # the real NFS server the NFS tests start on loopback
  nfs-ganesha-vfs   # its VFS backend
  rpcbind           # NFSv3 registration for ganesha
  nfs-common        # the real mount.nfs (its failure paths are tested)
  libnfs-utils      # nfs-ls, nfs-cat: cross-checks of berth's NFS client
  unzip             # unpacks the pinned Helm for the chart tests
  yamllint          # lints values, examples and rendered charts
  prometheus        # the real Prometheus the metrics test scrapes the driver with
  qemu-system-x86   # the kernel tier's VM: Debian's kernel under emulation (scripts/kernel-vm)
  debootstrap       # the kernel tier's root and the image tests' stand-in base, from Debian's packages
  podman            # builds berth's image from the Dockerfile and runs the chart's pods (test/image)
  runc              # podman's runtime here (crun refuses these machines' cgroups)
)

missing=()
for p in "${PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-test-deps: missing Debian packages: ${missing[*]} (install them as root with apt-get)" >&2
  exit 1
fi
echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The tests start their own nfs-ganesha, rpcbind and Prometheus on loopback:
# packaged services must not hold the ports.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl stop nfs-ganesha rpcbind.socket rpcbind prometheus 2>/dev/null || true
fi
