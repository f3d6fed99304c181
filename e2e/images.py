"""Image archives the e2e node imports into containerd (no registry anywhere).

- The project's images (injector, sidecar, vault-standin) built by
  ``images/build.sh`` from this checkout's Dockerfiles, exported as
  docker-archives named as a cluster resolves the e2e overlay's short names
  (``docker.io/sidecar-injector/<name>:e2e``). Cached by the content of
  everything the Dockerfiles copy: a change in injector/, sidecar/,
  standins/, images/, pyproject.toml or README.md builds them again.
- The node's own images, one static binary each, written directly as OCI
  archives (``e2e.oci``): the pod sandbox's pause and CoreDNS.

Archives live in ``~/.cache/sidecar-injector/images/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from e2e import oci
from e2e.build import CACHE, BuildError, _say
from e2e.node_config import COREDNS_IMAGE, SANDBOX_IMAGE

ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = CACHE / "images"
PROJECT_IMAGES = ("injector", "sidecar", "vault-standin")
INPUTS = ("images", "injector", "sidecar", "standins", "pyproject.toml", "README.md")
KEEP = 3  # project image sets kept in the cache


def inputs_digest() -> str:
    """sha256 over the files the Dockerfiles copy (names and contents)."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for name in INPUTS:
        path = ROOT / name
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for path in files:
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _prune() -> None:
    sets = sorted(
        (p for p in IMAGES_DIR.glob("project-*") if p.is_dir() and not p.name.endswith(".tmp")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in sets[KEEP:]:
        shutil.rmtree(stale, ignore_errors=True)


def project_archives() -> list[Path]:
    """The project's images for this checkout, built on first use."""
    key = inputs_digest()[:16]
    target = IMAGES_DIR / f"project-{key}"
    archives = [target / f"{name}.tar" for name in PROJECT_IMAGES]
    if all(a.exists() for a in archives):
        os.utime(target)
        return archives
    partial = IMAGES_DIR / f"project-{key}-{os.getpid()}.tmp"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    log = IMAGES_DIR / f"build-{key}.log"
    _say(f"building the project's images with images/build.sh (log: {log})")
    started = time.monotonic()
    # A private mount namespace: the builder's mounts cannot outlive a killed build.
    command = ["images/build.sh"]
    if os.geteuid() == 0 and shutil.which("unshare"):
        command = ["unshare", "--mount", "--propagation", "private", *command]
    env = dict(os.environ, TAG=f"e2e-{key}", EXPORT_TAG="e2e", EXPORT_DIR=str(partial))
    with log.open("wb") as out:
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=out, check=False)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"images/build.sh failed (full log: {log}):\n{tail}")
    if target.exists():
        shutil.rmtree(partial)  # a concurrent build of the same content won
    else:
        partial.rename(target)
    built = [line.split(": ", 1)[1] for line in log.read_text().splitlines() if ": built " in line]
    _say(f"images built in {time.monotonic() - started:.0f}s: {'; '.join(built)}")
    _prune()
    return archives


def infra_archives(binaries: dict[str, Path]) -> list[Path]:
    """pause and CoreDNS as OCI archives (cheap: rewritten when missing)."""
    wanted = {
        SANDBOX_IMAGE: ("pause", binaries["pause"]),
        COREDNS_IMAGE: ("coredns", binaries["coredns"]),
    }
    archives = []
    for name, (command, binary) in wanted.items():
        path = IMAGES_DIR / f"{binary.name}.oci.tar"
        if not path.exists():
            image = oci.Image(
                name=name,
                files={f"/{command}": (binary, 0o755)},
                entrypoint=[f"/{command}"],
            )
            oci.write_archive(image, path)
        archives.append(path)
    return archives
