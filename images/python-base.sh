#!/usr/bin/env bash
# A stand-in for python:3.11-slim-bookworm built from Debian packages, for
# machines where no registry serves that image. Writes a root filesystem
# tarball; images/build.sh imports it into the engine as
# localhost/sidecar-injector/python-base:3.11-bookworm-<hash>.
#
#   images/python-base.sh OUT.tar
#
# Debian bookworm minbase (merged /usr; no docs, man pages or locales; glibc's
# iconv modules only for UTF-*, UNICODE and ISO8859-1, Python has its own
# codecs) with Debian's Python 3.11, `python` -> python3, ca-certificates and
# netbase; apt configured as in Debian's container images (no package caches).
# pip and setuptools are installed from Debian's wheels into /usr/local, as in
# the official image, so the Dockerfiles' `pip uninstall pip setuptools wheel`
# removes them from the final stages (not byte-compiled: their .pyc files
# would stay in the base layer). /etc/pip.conf points pip at the system CA
# bundle (the build mounts the build host's bundle there). Needs mmdebstrap
# (root, or unprivileged with uidmap); about a minute on a fast mirror.
# DEBIAN_MIRROR picks another mirror (default http://deb.debian.org).
set -euo pipefail

out=${1:?usage: images/python-base.sh OUT.tar}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org}
if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "images/python-base.sh: mmdebstrap not found; install it (apt-get install mmdebstrap)" \
       "or set PYTHON_IMAGE to a Python 3.11 image your engine can use" >&2
  exit 1
fi

# Hooks run in the host's environment: keep the build host's pip settings out.
pip_install='set -e; set -- /usr/share/python-wheels/pip-*.whl;
  python3 "$1/pip" install --quiet --no-index --no-cache-dir --disable-pip-version-check \
    --no-compile --root-user-action=ignore --find-links=/usr/share/python-wheels pip setuptools;
  apt-get purge -y -qq python3-pip-whl python3-setuptools-whl >/dev/null'

# As in Debian's own container images: apt keeps no package caches, so an
# `apt-get install` in a Dockerfile leaves only what it installed.
docker_clean='DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";'

mmdebstrap --quiet --variant=minbase \
  --include=python3,python-is-python3,python3-pip-whl,python3-setuptools-whl,ca-certificates,netbase \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/lib/*/gconv/*.so' \
  --dpkgopt='path-include=/usr/lib/*/gconv/UTF-*.so' \
  --dpkgopt='path-include=/usr/lib/*/gconv/UNICODE.so' \
  --dpkgopt='path-include=/usr/lib/*/gconv/ISO8859-1.so' \
  --customize-hook='rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED' \
  --customize-hook="env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin chroot \"\$1\" sh -c '$pip_install'" \
  --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1"/etc/pip.conf' \
  --customize-hook="printf '%s\n' '$docker_clean' > \"\$1\"/etc/apt/apt.conf.d/docker-clean" \
  --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*' \
  bookworm "$out" \
  "deb $mirror/debian bookworm main" \
  "deb $mirror/debian bookworm-updates main" \
  "deb $mirror/debian-security bookworm-security main" </dev/null
