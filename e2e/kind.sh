#!/usr/bin/env bash
# make e2e-kind: a kind cluster, our images built and loaded into it, the e2e
# overlay applied, the e2e suite run against it, the cluster deleted.
#
#   e2e/kind.sh                      # everything, cluster deleted at the end
#   KEEP_CLUSTER=1 e2e/kind.sh       # keep it (kubectl --context kind-$KIND_CLUSTER)
#   KIND_NODE_IMAGE=kindest/node:v1.33.1 e2e/kind.sh   # pick the Kubernetes version
#   PYTEST_ARGS="-k operator" e2e/kind.sh
#
# Needs: kind, kubectl, a container engine (docker, or podman with
# KIND_EXPERIMENTAL_PROVIDER=podman), and the project's virtual environment
# (`make install`; `make e2e-kind` does both).
set -euo pipefail
cd "$(dirname "$0")/.."

KIND_CLUSTER=${KIND_CLUSTER:-sidecar-injector-e2e}
TAG=e2e
IMAGES=(sidecar-injector/injector:$TAG sidecar-injector/sidecar:$TAG sidecar-injector/vault-standin:$TAG)
PYTHON=${PYTHON:-.venv/bin/python}

die() { echo "e2e/kind.sh: $*" >&2; exit 1; }
[[ -x "$PYTHON" ]] || die "$PYTHON not found: run make install first (it creates .venv), or set PYTHON"
for tool in kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found on PATH (https://kind.sigs.k8s.io/docs/user/quick-start/)"
done

workdir=$(mktemp -d)
export KUBECONFIG="$workdir/kubeconfig"
cleanup() {
  status=$?
  if [[ "${KEEP_CLUSTER:-0}" == 1 ]]; then
    echo "e2e/kind.sh: keeping cluster $KIND_CLUSTER (kind delete cluster --name $KIND_CLUSTER)" >&2
  else
    kind delete cluster --name "$KIND_CLUSTER" --kubeconfig "$KUBECONFIG" || true
  fi
  rm -rf "$workdir"
  exit $status
}
trap cleanup EXIT

# podman names its images localhost/...: export archives named as the cluster
# resolves the manifests' short names (docker.io/sidecar-injector/...).
if [[ "${KIND_EXPERIMENTAL_PROVIDER:-docker}" == podman ]]; then
  TAG=$TAG EXPORT_DIR="$workdir/images" images/build.sh
else
  TAG=$TAG images/build.sh
fi

create=(kind create cluster --name "$KIND_CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s)
[[ -n "${KIND_NODE_IMAGE:-}" ]] && create+=(--image "$KIND_NODE_IMAGE")
"${create[@]}"

# kind nodes cannot pull from the local engine: load the images (pullPolicy Never).
if [[ "${KIND_EXPERIMENTAL_PROVIDER:-docker}" == podman ]]; then
  for archive in "$workdir"/images/*.tar; do
    kind load image-archive "$archive" --name "$KIND_CLUSTER"
  done
else
  kind load docker-image "${IMAGES[@]}" --name "$KIND_CLUSTER"
fi
# The real Vault of the overlay: its binary (built from Go modules on first use)
# as a local OCI archive; never pushed anywhere.
kind load image-archive "$("$PYTHON" -m e2e.vault_image)" --name "$KIND_CLUSTER"

# CRDs first, established, then everything (the SidecarProfile needs its CRD).
kubectl apply --server-side -f manifests/base/crd.yaml
kubectl wait --for condition=Established --timeout=60s crd/sidecarprofiles.sidecar.example.io
kubectl apply --server-side -k manifests/overlays/e2e

kubectl -n sidecar-e2e-vault rollout status deployment/vault --timeout=180s
kubectl -n sidecar-e2e-vault rollout status deployment/vault-standin --timeout=180s
kubectl -n sidecar-e2e-vault wait --for condition=Complete --timeout=180s job/vault-setup
kubectl -n sidecar-injector rollout status deployment/sidecar-injector --timeout=180s
# Ready replicas have loaded the certificate; wait until the leader has patched the caBundle.
for _ in $(seq 1 60); do
  bundle=$(kubectl get mutatingwebhookconfiguration sidecar-injector \
    -o jsonpath='{.webhooks[0].clientConfig.caBundle}')
  [[ -n "$bundle" ]] && break
  sleep 2
done
[[ -n "$bundle" ]] || die "the operator never patched the caBundle; logs:
$(kubectl -n sidecar-injector logs deployment/sidecar-injector --tail=50)"

SIDECAR_E2E_INJECTOR=cluster "$PYTHON" -m pytest -q -rs e2e ${PYTEST_ARGS:-}
