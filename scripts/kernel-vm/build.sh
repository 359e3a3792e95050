#!/usr/bin/env bash
# Builds the kernel tier's virtual machine from Debian packages only, and
# caches it: a Debian 12 root made with debootstrap (minbase plus the tools
# the node service runs, nfs-ganesha, and Debian's own kernel with the
# initramfs Debian makes for it), packed into an ext4 image without a loop
# device (mke2fs -d). No downloaded VM image, no toolchain from elsewhere.
#
# Prints the cache directory (vmlinuz, initrd.img, root.img) on its last
# line. Built once per machine and per version of this script: the cache key
# is this file's hash. Progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${BERTH_VM_CACHE:-/var/cache/berth-test}
key=$(cat "$here/build.sh" "$here/init" | sha256sum | cut -c1-12)
out=$cache/kernel-vm-$key
say() { echo "kernel-vm: $*" >&2; }

if [ -f "$out/ready" ]; then
  echo "$out"
  exit 0
fi
for tool in debootstrap mke2fs qemu-system-x86_64; do
  command -v "$tool" >/dev/null || { say "missing $tool (scripts/install-test-deps.sh installs it)"; exit 1; }
done

# The Debian mirror this machine's apt already uses (its sources, not a host named here).
mirror=${BERTH_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }')
fi
if [ -z "$mirror" ]; then
  mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | awk '{ print $2; exit }')
fi
[ -n "$mirror" ] || { say "cannot find the Debian mirror in /etc/apt (set BERTH_DEBIAN_MIRROR)"; exit 1; }

# What the guest runs: the kernel and its initramfs; the node service's tools
# (mount, losetup, mkfs, fsfreeze, filefrag, cryptsetup, quota); the kernel NFS
# client's helpers (nfs-common; netbase, without which mount.nfs finds no
# 'tcp' protocol); the NFS server the guest's tests start on its loopback.
packages=(
  linux-image-amd64 initramfs-tools kmod
  util-linux mount e2fsprogs xfsprogs btrfs-progs coreutils
  iproute2 netbase procps
  nfs-common nfs-ganesha nfs-ganesha-vfs rpcbind
  cryptsetup-bin quota lvm2 thin-provisioning-tools
)

mkdir -p "$cache"
work=$(mktemp -d "$cache/build-XXXXXX")
cleanup() {
  for m in proc sys dev/pts dev; do umount "$work/root/$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
root=$work/root
start=$(date +%s)

say "debootstrap bookworm (minbase and ${#packages[@]} packages) from the mirror apt uses; 2 to 5 minutes"
IFS=, eval 'include="${packages[*]}"'
debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -30 "$work/debootstrap.log" >&2
  say "debootstrap failed"
  exit 1
}
say "root made in $(($(date +%s) - start)) s"

version=$(basename "$(ls -d "$root"/lib/modules/* | head -1)")
[ -f "$root/boot/vmlinuz-$version" ] || { say "no kernel in the root"; exit 1; }
if [ ! -f "$root/boot/initrd.img-$version" ]; then
  say "making the initramfs"
  mount -t proc proc "$root/proc"
  chroot "$root" update-initramfs -c -k "$version" >&2
  umount "$root/proc"
fi
cp "$root/boot/vmlinuz-$version" "$work/vmlinuz"
cp "$root/boot/initrd.img-$version" "$work/initrd.img"

say "pruning what a VM with virtio disks and no network card never loads"
k=$root/lib/modules/$version/kernel
rm -rf "$k/sound" "$k/drivers/gpu" "$k/drivers/media" "$k/drivers/net/wireless" "$k/drivers/net/ethernet" \
  "$k/drivers/infiniband" "$k/drivers/staging" "$k/drivers/usb" "$k/drivers/bluetooth" "$k/net/wireless" \
  "$k/net/bluetooth" "$k/net/mac80211" "$k/drivers/iio" "$k/drivers/hid" "$k/drivers/input" "$k/drivers/isdn" \
  "$k/drivers/mtd" "$k/drivers/hwmon" "$k/drivers/video" "$k/drivers/scsi" "$k/drivers/ata" "$k/drivers/nfc" \
  "$k/drivers/thunderbolt" "$k/drivers/firewire" "$k/drivers/edac" "$k/drivers/crypto/qat"
rm -rf "$root/boot"/* "$root/var/cache/apt"/*.bin "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* \
  "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" "$root/lib/firmware"
chroot "$root" depmod "$version"

# Mount points for the shares the runner gives the guest (9p), and PID 1.
mkdir -p "$root/berth/run" "$root/berth/host-bin"
install -m 0755 "$here/init" "$root/sbin/berth-init"
echo berth-kernel-vm >"$root/etc/hostname"
: >"$root/etc/fstab"

size=$(($(du -sm "$root" | cut -f1) + 512))
say "packing the root into an ext4 image of ${size} MiB (mke2fs -d)"
mke2fs -q -t ext4 -L berth-root -d "$root" "$work/root.img" "${size}M"
echo "$version" >"$work/kernel-version"

rm -rf "$root"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
touch "$out/ready"
# Older builds of this script are no longer used.
for old in "$cache"/kernel-vm-*; do [ "$old" = "$out" ] || rm -rf "$old"; done
say "built in $(($(date +%s) - start)) s: $out ($(du -sh "$out" | cut -f1))"
echo "$out"
