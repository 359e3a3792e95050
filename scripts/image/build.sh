#!/usr/bin/env bash
# Builds berth's image from the repository's Dockerfile with podman, FROM the
# stand-in base (stand-in-base.sh says why), as localhost/berth:test. Layers
# are cached by podman: an unchanged tree rebuilds in seconds. Progress goes
# to stderr; the tag is printed on the last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
tag=${BERTH_IMAGE:-localhost/berth:test}
bash "$here/stand-in-base.sh" >/dev/null
echo "image: building $tag from the Dockerfile with podman (about 2 minutes on a new machine, cached layers after)" >&2
log=$(mktemp /tmp/berth-image-build-XXXXXX.log)
start=$(date +%s)
if ! podman build --pull=never --network host -t "$tag" -f "$root/Dockerfile" "$root" >"$log" 2>&1; then
  tail -40 "$log" >&2
  rm -f "$log"
  echo "image: podman build failed" >&2
  exit 1
fi
rm -f "$log"
echo "image: built in $(($(date +%s) - start)) s, $(podman image inspect "$tag" --format '{{.Size}}' | awk '{ printf "%d MB", $1 / 1e6 }')" >&2
echo "$tag"
