#!/usr/bin/env bash
# Build the images: sidecar-injector/injector, sidecar-injector/sidecar and the
# e2e-only sidecar-injector/vault-standin, tagged $TAG (default: the project
# version), from images/*.Dockerfile as they are.
#   images/build.sh                       # tag 0.1.0
#   TAG=e2e images/build.sh               # what make e2e-kind loads into kind
#   EXPORT_DIR=out images/build.sh        # also out/<name>.tar (docker-archive)
#   EXPORT_TAG=e2e: the tag inside those archives (default $TAG)
#
# CONTAINER_ENGINE: docker (its daemon answering), podman or buildah
# (daemonless); default: the first of these that works here.
# PYTHON_IMAGE: the base of both Dockerfiles. Default python:3.11-slim-bookworm
# when the engine has it or can pull it; otherwise (no registry reachable) a
# local stand-in built from Debian packages by images/python-base.sh
# (mmdebstrap), imported as localhost/sidecar-injector/python-base:3.11-bookworm-<hash>
# and reused by later builds (REBUILD_BASE=1 refreshes it, e.g. for Debian updates).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
TAG=${TAG:-$VERSION}
REGISTRY=${REGISTRY:-sidecar-injector}
OFFICIAL_BASE=python:3.11-slim-bookworm
# Tagged with its recipe's hash: a changed images/python-base.sh builds a new one.
LOCAL_BASE=localhost/sidecar-injector/python-base:3.11-bookworm-$(sha256sum images/python-base.sh | cut -c1-8)
say() { echo "images/build.sh: $*" >&2; }
die() { say "$*"; exit 1; }

works() {  # works ENGINE: can this engine build here?
  command -v "$1" >/dev/null 2>&1 || return 1
  case $1 in
    buildah) buildah version >/dev/null 2>&1 ;;
    *) "$1" info >/dev/null 2>&1 ;;
  esac
}

engine=${CONTAINER_ENGINE:-}
if [[ -z "$engine" ]]; then
  for candidate in docker podman buildah; do
    if works "$candidate"; then engine=$candidate; break; fi
  done
  [[ -n "$engine" ]] || die "no working container engine: docker (with its daemon running)," \
    "podman or buildah (apt-get install buildah). Install one, or set CONTAINER_ENGINE."
elif ! works "$engine"; then
  die "'$engine' is not installed or not working ('$engine info' failed; for docker:" \
      "is its daemon running?)."
fi

has_image() {
  case $engine in
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    podman) podman image exists "$1" ;;
    buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
  esac
}

import_rootfs() {  # import_rootfs TARBALL IMAGE
  case $engine in
    docker|podman)
      "$engine" import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' "$1" "$2" >/dev/null ;;
    buildah)
      local c
      c=$(buildah from scratch)
      buildah add "$c" "$1" / >/dev/null
      buildah config --cmd '["python3"]' --env LANG=C.UTF-8 "$c"
      buildah commit --rm --quiet "$c" "$2" >/dev/null ;;
  esac
}

build_local_base() {
  local work status=0
  work=$(mktemp -d)
  say "building $LOCAL_BASE from Debian packages (images/python-base.sh, mmdebstrap)"
  images/python-base.sh "$work/rootfs.tar" && import_rootfs "$work/rootfs.tar" "$LOCAL_BASE" || status=$?
  rm -rf "$work"
  return "$status"
}

choose_base() {
  if [[ -n "${PYTHON_IMAGE:-}" ]]; then
    say "base: $PYTHON_IMAGE (PYTHON_IMAGE)"
  elif has_image "$OFFICIAL_BASE"; then
    PYTHON_IMAGE=$OFFICIAL_BASE
    say "base: $OFFICIAL_BASE"
  elif [[ "${REBUILD_BASE:-0}" != 1 ]] && has_image "$LOCAL_BASE"; then
    PYTHON_IMAGE=$LOCAL_BASE
    say "base: $LOCAL_BASE (built earlier from Debian packages; REBUILD_BASE=1 refreshes it)"
  elif [[ "${REBUILD_BASE:-0}" != 1 ]] && "$engine" pull "$OFFICIAL_BASE" >/dev/null 2>&1; then
    PYTHON_IMAGE=$OFFICIAL_BASE
    say "base: $OFFICIAL_BASE (pulled)"
  else
    say "no registry serves $OFFICIAL_BASE here: using a local Debian base instead"
    build_local_base
    PYTHON_IMAGE=$LOCAL_BASE
    say "base: $LOCAL_BASE"
  fi
}

build() {  # build DOCKERFILE TARGET IMAGE
  local args=(--file "$1" --target "$2" --tag "$3:$TAG" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
  say "$engine build $3:$TAG (target $2)"
  case $engine in
    docker) DOCKER_BUILDKIT=1 docker build "${args[@]}" . ;;
    # --layers=false: buildah's layer cache does not see a change in what a
    # RUN --mount=type=bind,from=<stage> mounts, and reuses a stale layer.
    podman) podman build --layers=false "${args[@]}" "${ca_mount[@]}" . ;;
    # chroot isolation and the host network: no OCI runtime, cgroups or CNI
    # network are needed for the RUN steps.
    buildah) buildah bud --isolation chroot --network host --layers=false "${args[@]}" "${ca_mount[@]}" . ;;
  esac
}

image_size() {  # image_size IMAGE: its size as the engine reports it
  case $engine in
    buildah) buildah images --noheading --format '{{.Size}}' "$1" ;;
    *) echo "$(( $("$engine" image inspect --format '{{.Size}}' "$1") / 1000000 )) MB" ;;
  esac
}

export_image() {  # export_image IMAGE FILE NAME: a docker-archive of IMAGE named NAME
  rm -f "$2"
  case $engine in
    docker) docker tag "$1" "$3" && docker save --output "$2" "$3" ;;
    podman) podman tag "$1" "$3" && podman save --quiet --format docker-archive --output "$2" "$3" ;;
    buildah) buildah push --quiet "$1" "docker-archive:$2:$3" ;;
  esac
}

choose_base
# The local base's pip trusts the system bundle: give it the build host's
# (where outgoing TLS is re-signed by a local CA, only that bundle trusts it).
ca_mount=()
if [[ "$PYTHON_IMAGE" == "$LOCAL_BASE" && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  ca_mount=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
build images/injector.Dockerfile injector "$REGISTRY/injector"
build images/injector.Dockerfile vault-standin "$REGISTRY/vault-standin"
build images/sidecar.Dockerfile sidecar "$REGISTRY/sidecar"
for name in injector sidecar vault-standin; do
  ref=$REGISTRY/$name:$TAG
  [[ $engine == docker ]] || ref=localhost/$ref
  say "built $ref: $(image_size "$ref")"
  if [[ -n "${EXPORT_DIR:-}" ]]; then
    # Named as a cluster resolves the manifests' short names (docker.io/...).
    mkdir -p "$EXPORT_DIR"
    export_image "$ref" "$EXPORT_DIR/$name.tar" "docker.io/$REGISTRY/$name:${EXPORT_TAG:-$TAG}"
  fi
done
