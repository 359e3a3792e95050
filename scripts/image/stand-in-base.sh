#!/usr/bin/env bash
# A STAND-IN for the Dockerfile's base image (node:20-bookworm-slim), which
# no registry reachable from these machines serves: a Debian 12 root made
# with debootstrap from the mirror this machine's apt uses, plus this
# machine's own Node 20 and npm laid out as the official image lays them
# (/usr/local/bin/node, /usr/local/lib/node_modules/npm, /usr/local/include/node).
# Imported into podman and tagged as the Dockerfile's FROM, so the unchanged
# Dockerfile builds with --pull=never. Cached: rebuilt only when this script
# or the Node binary changes. Prints the tag on its last line.
#
# The registries are reached through this machine's trust settings: the
# stand-in carries its CA file and points npm at it (NODE_EXTRA_CA_CERTS,
# SSL_CERT_FILE), as TLS-intercepting build networks require. The real
# Dockerfile carries none of it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
key=$(cat "$here/stand-in-base.sh" "$node_bin" | sha256sum | cut -c1-12)
tag=localhost/berth-stand-in-base:$key
from=docker.io/library/node:20-bookworm-slim
say() { echo "stand-in base: $*" >&2; }

if podman image exists "$tag"; then
  podman tag "$tag" "$from"
  echo "$tag"
  exit 0
fi
mirror=${BERTH_DEBIAN_MIRROR:-}
[ -n "$mirror" ] || mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }')
[ -n "$mirror" ] || mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | awk '{ print $2; exit }')
[ -n "$mirror" ] || { say "cannot find the Debian mirror in /etc/apt (set BERTH_DEBIAN_MIRROR)"; exit 1; }

work=$(mktemp -d /var/tmp/berth-stand-in-XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
say "debootstrap bookworm minbase (about a minute), then this machine's Node $(node --version)"
debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  exit 1
}
root=$work/root
install -D -m 0755 "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules" "$root/usr/local/include"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
cp -a "$(dirname "$(dirname "$node_bin")")/include/node" "$root/usr/local/include/node"
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
tar -C "$root" -c . | podman import \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["node"]' \
  --message "berth test stand-in for $from" - "$tag" >/dev/null
podman tag "$tag" "$from"
# Older stand-ins are no longer used.
podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/berth-stand-in-base:' | grep -v ":$key\$" | xargs -r podman rmi >/dev/null 2>&1 || true
say "made in $(($(date +%s) - start)) s: $tag, tagged $from"
echo "$tag"
