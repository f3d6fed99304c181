"""Build the control plane's binaries from Go modules, once, into a cache.

kube-apiserver cannot be ``go install``ed: k8s.io/kubernetes' go.mod replaces
every ``k8s.io/*`` staging module with ``./staging/...``. A wrapper module
that requires ``k8s.io/kubernetes vX`` and replaces each staging module with
its published ``v0.Y.Z`` tag builds it from the Go module proxy alone. The
staging list, the ``go`` and the ``godebug`` lines are read from that release's
own go.mod (``go mod download``), not hard-coded. kubectl comes from the same
wrapper (same version as the API server, so no version skew in the e2e suite).
etcd is built the same way from ``go.etcd.io/etcd/server/v3``, whose
``etcdmain.Main`` is what etcd's own ``main`` calls.

Nothing is cloned: every source comes from the module proxy by name and
version. Binaries land in ``~/.cache/sidecar-injector/bin/<name>-<version>``
(``$SIDECAR_E2E_CACHE`` overrides the root); only the first run builds.
``python -m e2e.build`` builds (or finds) them and prints their paths.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

KUBERNETES_VERSION = os.environ.get("SIDECAR_E2E_KUBERNETES_VERSION", "v1.36.4")
# The etcd server release matching the etcd client modules of that Kubernetes
# release (k8s.io/kubernetes v1.36.4 requires go.etcd.io/etcd/client/v3 v3.6.8).
ETCD_VERSION = os.environ.get("SIDECAR_E2E_ETCD_VERSION", "v3.6.8")
CACHE = Path(os.environ.get("SIDECAR_E2E_CACHE", Path.home() / ".cache" / "sidecar-injector"))
BIN = CACHE / "bin"
KUBERNETES_COMMANDS = ("kube-apiserver", "kubectl")
# Kubernetes 1.36 needs Go >= 1.26. Without such a `go` on PATH, this toolchain
# is fetched from the module proxy (golang.org/toolchain, checked against the
# checksum database through the proxy), as `GOTOOLCHAIN` would.
MIN_GO = (1, 26)
GO_TOOLCHAIN = os.environ.get("SIDECAR_E2E_GO_TOOLCHAIN", "go1.26.8")


class BuildError(RuntimeError):
    """A binary could not be built; the message names the command and its log."""


def _say(message: str) -> None:
    print(f"e2e: {message}", file=sys.stderr, flush=True)


def _go_env() -> dict[str, str]:
    # -mod=mod: the wrapper's go.sum is written by `go mod tidy` here.
    # CGO off: static binaries, no C toolchain needed on a fresh machine.
    # -buildvcs=false: the cache may sit inside someone's git checkout.
    return dict(os.environ, GOFLAGS="-mod=mod -buildvcs=false", CGO_ENABLED="0")


def _go_version(go: str) -> tuple[int, ...]:
    result = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    match = re.match(r"go(\d+)\.(\d+)", result.stdout.strip())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _proxy() -> str:
    for entry in re.split(r"[,|]", os.environ.get("GOPROXY", "") or "https://proxy.golang.org"):
        if entry.startswith(("https://", "http://")):
            return entry.rstrip("/")
    return "https://proxy.golang.org"


def _h1(archive: zipfile.ZipFile) -> str:
    """The checksum database's h1: hash of a module zip (golang.org/x/mod dirhash.Hash1)."""
    summary = hashlib.sha256()
    for name in sorted(archive.namelist()):
        digest = hashlib.sha256(archive.read(name)).hexdigest()
        summary.update(f"{digest}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def _fetch_go() -> str:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    version = f"v0.0.1-{GO_TOOLCHAIN}.linux-{arch}"
    root = CACHE / "go" / version
    go = root / "bin" / "go"
    if go.exists():
        return str(go)
    module = f"golang.org/toolchain@{version}"
    _say(f"no Go >= {'.'.join(map(str, MIN_GO))} on PATH: fetching {module} from {_proxy()}")
    lookup = f"{_proxy()}/sumdb/sum.golang.org/lookup/{module}"
    with urllib.request.urlopen(lookup, timeout=60) as response:
        expected = re.search(
            rf"^golang.org/toolchain {version} (h1:\S+)$", response.read().decode(), re.M
        )
    if expected is None:
        raise BuildError(f"no checksum for {module} at {lookup}")
    zip_path = CACHE / "go" / f"{version}.zip"
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(
        f"{_proxy()}/golang.org/toolchain/@v/{version}.zip", timeout=600
    ) as response:
        zip_path.write_bytes(response.read())
    prefix = f"{module}/"
    staging = root.with_name(root.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as archive:
        if _h1(archive) != expected.group(1):
            raise BuildError(f"{zip_path}: checksum mismatch with the checksum database")
        for info in archive.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            target = staging / info.filename[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            target.chmod(((info.external_attr >> 16) & 0o777) or 0o644)
    zip_path.unlink()
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    return str(go)


def go_command() -> str:
    """`go` from PATH if it is new enough, else a toolchain from the module proxy."""
    found = shutil.which("go")
    if found and _go_version(found) >= MIN_GO:
        return found
    return _fetch_go()


def _go(args: list[str], cwd: Path, log: Path, what: str = "") -> None:
    """Run ``go ARGS`` in ``cwd``, output to ``log``; ``what`` it does is said first."""
    command = "go " + " ".join(args)
    what = what or f"go {args[0]} in {cwd}"
    _say(f"{what} (`go {' '.join(args[:2] if args[0] == 'mod' else args[:1])}`; log: {log})")
    _note_lock(what, log)
    with log.open("ab") as out:
        out.write(f"\n$ (cd {cwd} && {command})\n".encode())
        out.flush()
        result = subprocess.run(
            [go_command(), *args], cwd=cwd, env=_go_env(), stdout=out, stderr=out, check=False
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BuildError(f"`{command}` failed in {cwd} (full log: {log}):\n{tail}")


def _upstream_go_mod(module: str, version: str, work: Path) -> str:
    result = subprocess.run(
        [go_command(), "mod", "download", "-json", f"{module}@{version}"],
        cwd=work,
        env=_go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            f"`go mod download -json {module}@{version}` failed: "
            f"{result.stdout.strip()} {result.stderr.strip()}"
        )
    return Path(json.loads(result.stdout)["GoMod"]).read_text()


LOCK_POLL = 0.5  # seconds between tries of a lock another build holds
LOCK_NOTE_EVERY = 60.0  # seconds between "still waiting" lines


def _lock_holder(lock_path: Path) -> str:
    """Who holds the build lock, as its holder wrote it: pid, what, log."""
    try:
        note = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        note = {}
    if not isinstance(note, dict) or "pid" not in note:
        return "another process (it has not said what it builds yet)"
    return f"pid {note['pid']}, {note.get('building', 'a build')} (log: {note.get('log', '-')})"


def _note_lock(what: str, log: Path) -> None:
    """Record in the lock file what this process builds, for those who wait on it."""
    note = {"pid": os.getpid(), "building": what, "log": str(log)}
    (CACHE / ".build.lock").write_text(json.dumps(note))


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time per cache (two `make` runs share the binaries).
    A wait says whom it waits for (pid, what, log) and repeats every minute."""
    CACHE.mkdir(parents=True, exist_ok=True)
    lock_path = CACHE / ".build.lock"
    with lock_path.open("a") as lock:
        started = time.monotonic()
        said = 0.0
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if not said or waited - said >= LOCK_NOTE_EVERY:
                    verb = "waiting" if not said else f"still waiting ({waited:.0f}s)"
                    _say(
                        f"{verb} for another build of the binaries to finish: "
                        f"{_lock_holder(lock_path)}; lock {lock_path}"
                    )
                    said = waited or LOCK_POLL
                time.sleep(LOCK_POLL)
        if said:
            _say(f"the other build finished after {time.monotonic() - started:.0f}s")
        _note_lock("checking which binaries are missing", CACHE)
        try:
            yield
        finally:
            lock_path.write_text("")
            fcntl.flock(lock, fcntl.LOCK_UN)


def staging_tag(version: str) -> str:
    """k8s.io/kubernetes v1.Y.Z publishes its staging modules as v0.Y.Z."""
    major, minor, patch = version.lstrip("v").split(".")
    if major != "1":
        raise BuildError(f"unexpected Kubernetes version {version!r}; expected v1.Y.Z")
    return f"v0.{minor}.{patch}"


def wrapper_go_mod(upstream: str, version: str) -> str:
    """The wrapper module's go.mod, derived from k8s.io/kubernetes' own go.mod."""
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", upstream, re.M)))
    if not staging:
        raise BuildError(f"no ./staging replaces in k8s.io/kubernetes {version} go.mod")
    go_line = re.search(r"^go \S+$", upstream, re.M)
    lines = ["module sidecar-injector.e2e/kubernetes", ""]
    lines += [go_line.group(0) if go_line else "go 1.26", ""]
    lines += re.findall(r"^godebug .*$", upstream, re.M)
    lines += ["", f"require k8s.io/kubernetes {version}", "", "replace ("]
    lines += [f"\t{module} => {module} {staging_tag(version)}" for module in staging]
    lines += [")", ""]
    return "\n".join(lines)


def _build_kubernetes(missing: list[str]) -> None:
    version = KUBERNETES_VERSION
    work = CACHE / "build" / f"kubernetes-{version}"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    _say(
        f"building {', '.join(missing)} {version} from Go modules: first run only, "
        f"several minutes (about 7 on 2 cores with empty Go caches; log: {log})"
    )
    (work / "go.mod").write_text("module sidecar-injector.e2e/kubernetes\n\ngo 1.26\n")
    upstream = _upstream_go_mod("k8s.io/kubernetes", version, work)
    (work / "go.mod").write_text(wrapper_go_mod(upstream, version))
    commands = sorted({*KUBERNETES_COMMANDS, *missing})
    imports = "".join(f'\t_ "k8s.io/kubernetes/cmd/{name}"\n' for name in commands)
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports})\n")
    _go(["mod", "tidy"], work, log, f"downloading the modules of {', '.join(missing)}")
    minor = version.split(".")[1]
    ldflags = " ".join(
        [
            "-s",
            "-w",
            f"-X k8s.io/component-base/version.gitVersion={version}",
            "-X k8s.io/component-base/version.gitMajor=1",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
            f"-X k8s.io/client-go/pkg/version.gitVersion={version}",
            "-X k8s.io/client-go/pkg/version.gitMajor=1",
            f"-X k8s.io/client-go/pkg/version.gitMinor={minor}",
        ]
    )
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    packages = [f"k8s.io/kubernetes/cmd/{name}" for name in missing]
    _go(
        ["build", "-trimpath", f"-ldflags={ldflags}", "-o", f"{out}/", *packages],
        work,
        log,
        f"compiling {', '.join(missing)} {version}",
    )
    BIN.mkdir(parents=True, exist_ok=True)
    for name in missing:
        (out / name).replace(BIN / f"{name}-{version}")


def _build_etcd() -> None:
    version = ETCD_VERSION
    work = CACHE / "build" / f"etcd-{version}"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    _say(f"building etcd {version} from Go modules: first run only, about a minute (log: {log})")
    (work / "go.mod").write_text(
        "module sidecar-injector.e2e/etcd\n\ngo 1.26\n\n"
        f"require go.etcd.io/etcd/server/v3 {version}\n"
    )
    (work / "main.go").write_text(
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    _go(["mod", "tidy"], work, log, f"downloading the modules of etcd {version}")
    tmp = work / "etcd.out"
    _go(
        ["build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "."],
        work,
        log,
        f"compiling etcd {version}",
    )
    BIN.mkdir(parents=True, exist_ok=True)
    tmp.replace(BIN / f"etcd-{version}")


def binary(name: str) -> Path:
    version = ETCD_VERSION if name == "etcd" else KUBERNETES_VERSION
    return BIN / f"{name}-{version}"


def ensure(kubernetes: tuple[str, ...] = KUBERNETES_COMMANDS) -> dict[str, Path]:
    """Paths of etcd and the Kubernetes commands asked for (default: kube-apiserver
    and kubectl), building what is missing; the missing Kubernetes commands are
    built together (one ``go build``: shared packages compile once)."""
    names = ["etcd", *kubernetes]
    if all(binary(name).exists() for name in names):
        return {name: binary(name) for name in names}
    with _build_lock():
        started = time.monotonic()
        if not binary("etcd").exists():
            _build_etcd()
        missing = [name for name in kubernetes if not binary(name).exists()]
        if missing:
            _build_kubernetes(missing)
        if time.monotonic() - started > 1:
            _say(f"built in {time.monotonic() - started:.0f}s; cached in {BIN}")
    return {name: binary(name) for name in names}


def main() -> int:
    try:
        paths = ensure()
    except BuildError as exc:
        print(f"e2e: build failed: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
