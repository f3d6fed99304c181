#!/usr/bin/env bash
# Build the images: sidecar-injector/injector, sidecar-injector/sidecar and the
# e2e-only sidecar-injector/vault-standin, tagged $TAG (default: the project
# version). Uses $CONTAINER_ENGINE, else docker, else podman.
#   images/build.sh              # tag 0.1.0
#   TAG=e2e images/build.sh      # what make e2e-kind loads into kind
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
TAG=${TAG:-$VERSION}
REGISTRY=${REGISTRY:-sidecar-injector}

engine=${CONTAINER_ENGINE:-}
if [[ -z "$engine" ]]; then
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null 2>&1; then engine=$candidate; break; fi
  done
fi
if [[ -z "$engine" ]]; then
  echo "images/build.sh: no container engine found (docker or podman; set CONTAINER_ENGINE" \
       "to use another). Install one, or build elsewhere from images/*.Dockerfile." >&2
  exit 1
fi
if ! "$engine" info >/dev/null 2>&1; then
  echo "images/build.sh: '$engine' is installed but its engine is not running or not" \
       "reachable ('$engine info' failed). Start it (e.g. the Docker daemon) and retry." >&2
  exit 1
fi

build() {  # build DOCKERFILE TARGET IMAGE
  echo "images/build.sh: $engine build $3:$TAG (target $2)" >&2
  DOCKER_BUILDKIT=1 "$engine" build --file "$1" --target "$2" --tag "$3:$TAG" .
}
build images/injector.Dockerfile injector "$REGISTRY/injector"
build images/injector.Dockerfile vault-standin "$REGISTRY/vault-standin"
build images/sidecar.Dockerfile sidecar "$REGISTRY/sidecar"
echo "images/build.sh: built $REGISTRY/{injector,sidecar,vault-standin}:$TAG" >&2
