#!/usr/bin/env bash
# Unpacks berth's image's root filesystem into .tools/image/root, where the
# kernel tier's VM sees it (the project is shared into the guest) and runs
# the image's own mount.nfs in a chroot: the VM has no container runtime.
# Done again only when the image changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
tag=$(bash "$here/build.sh" | tail -1)
id=$(podman image inspect "$tag" --format '{{.Id}}')
# The image holds setuid programs (mount, su): its root is unpacked inside a
# directory only root may enter.
out=$root/.tools/image
[ "$(cat "$out/image-id" 2>/dev/null)" = "$id" ] && exit 0
rm -rf "$out" "$root/.tools/image-root"
mkdir -p -m 0700 "$out"
mkdir "$out/root"
container=$(podman create "$tag")
trap 'podman rm "$container" >/dev/null' EXIT
podman export "$container" | tar -C "$out/root" -x
echo "$id" >"$out/image-id"
echo "image: its root filesystem unpacked in .tools/image/root for the kernel tier" >&2
