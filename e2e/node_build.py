"""Build what the e2e node runs, from Go modules, once, into the shared cache.

Next to ``e2e.build`` (etcd, kube-apiserver, kubectl) and with its helpers:

- kubelet, kube-proxy, kube-scheduler and kube-controller-manager from the
  same k8s.io/kubernetes wrapper module, in the same ``go build`` as the
  control plane's commands when those are missing too (shared packages are
  compiled once);
- containerd v2, its runc shim and ctr from a wrapper module requiring
  ``github.com/containerd/containerd/v2`` (CGO off: the cgo-only btrfs
  snapshotter drops out);
- CoreDNS with only the plugins cluster DNS needs (errors, health, ready,
  kubernetes, cache, loadbalance): a wrapper ``main`` calling
  ``coremain.Run``, which is what CoreDNS's own ``main`` does after importing
  every plugin;
- the pod sandbox's pause binary from Kubernetes' own ``build/pause/linux/pause.c``
  (in the k8s.io/kubernetes module), compiled static with the C compiler.

``python -m e2e.node_build`` builds (or finds) them and prints their paths.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from e2e import build
from e2e.build import BIN, CACHE, BuildError, _go, _say

NODE_COMMANDS = ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager")
CONTAINERD_VERSION = os.environ.get("SIDECAR_E2E_CONTAINERD_VERSION", "v2.3.7")
CONTAINERD_COMMANDS = ("containerd", "containerd-shim-runc-v2", "ctr")
COREDNS_VERSION = os.environ.get("SIDECAR_E2E_COREDNS_VERSION", "v1.14.7")
COREDNS_PLUGINS = ("errors", "health", "ready", "kubernetes", "cache", "loadbalance")


def containerd_dir() -> Path:
    """containerd, its shim and ctr side by side (containerd finds the shim on PATH)."""
    return BIN / f"containerd-{CONTAINERD_VERSION}"


def coredns_binary() -> Path:
    return BIN / f"coredns-{COREDNS_VERSION}"


def pause_binary() -> Path:
    return BIN / f"pause-{build.KUBERNETES_VERSION}"


def _wrapper(work: Path, module: str, require: str, main: str | None, imports: list[str]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text(f"module {module}\n\ngo 1.26\n\nrequire {require}\n")
    if main is not None:
        (work / "main.go").write_text(main)
    else:
        lines = "".join(f'\t_ "{name}"\n' for name in imports)
        (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{lines})\n")


def _build_containerd() -> None:
    version = CONTAINERD_VERSION
    work = CACHE / "build" / f"containerd-{version}"
    log = work / "build.log"
    module = "github.com/containerd/containerd/v2"
    packages = [f"{module}/cmd/{name}" for name in CONTAINERD_COMMANDS]
    _say(f"building containerd {version} from Go modules: first run only (log: {log})")
    _wrapper(work, "sidecar-injector.e2e/containerd", f"{module} {version}", None, packages)
    _go(["mod", "tidy"], work, log)
    ldflags = f"-s -w -X {module}/version.Version={version} -X {module}/version.Package={module}"
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    _go(["build", "-trimpath", f"-ldflags={ldflags}", "-o", f"{out}/", *packages], work, log)
    target = containerd_dir()
    shutil.rmtree(target, ignore_errors=True)
    BIN.mkdir(parents=True, exist_ok=True)
    out.replace(target)


def _coredns_main() -> str:
    plugins = "".join(
        f'\t_ "github.com/coredns/coredns/plugin/{name}"\n' for name in COREDNS_PLUGINS
    )
    return (
        "// CoreDNS with the plugins the e2e node's cluster DNS needs.\n"
        "package main\n\n"
        f'import (\n\t"github.com/coredns/coredns/coremain"\n{plugins})\n\n'
        "func main() { coremain.Run() }\n"
    )


def _build_coredns() -> None:
    version = COREDNS_VERSION
    work = CACHE / "build" / f"coredns-{version}"
    log = work / "build.log"
    _say(f"building CoreDNS {version} from Go modules: first run only (log: {log})")
    require = f"github.com/coredns/coredns {version}"
    _wrapper(work, "sidecar-injector.e2e/coredns", require, _coredns_main(), [])
    _go(["mod", "tidy"], work, log)
    tmp = work / "coredns.out"
    _go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "."], work, log)
    BIN.mkdir(parents=True, exist_ok=True)
    tmp.replace(coredns_binary())


def _kubernetes_module_dir() -> Path:
    work = CACHE / "build" / f"kubernetes-{build.KUBERNETES_VERSION}"
    module = f"k8s.io/kubernetes@{build.KUBERNETES_VERSION}"
    result = subprocess.run(
        [build.go_command(), "mod", "download", "-json", module],
        cwd=work if work.is_dir() else CACHE,
        env=build._go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"`go mod download k8s.io/kubernetes`: {result.stderr.strip()}")
    return Path(json.loads(result.stdout)["Dir"])


def _build_pause() -> None:
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise BuildError(
            "no C compiler for the pod sandbox's pause binary: apt-get install gcc libc6-dev"
        )
    source = _kubernetes_module_dir() / "build" / "pause" / "linux" / "pause.c"
    target = pause_binary()
    tmp = target.with_name(target.name + ".out")
    BIN.mkdir(parents=True, exist_ok=True)
    command = [compiler, "-Os", "-Wall", "-Werror", "-static", "-s"]
    command += [f"-DVERSION={build.KUBERNETES_VERSION}-e2e", str(source), "-o", str(tmp)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(
            f"compiling {source} failed ({' '.join(command)}): {result.stderr.strip()}; "
            "a static build needs libc6-dev (apt-get install gcc libc6-dev)"
        )
    tmp.replace(target)


def node_binaries() -> dict[str, Path]:
    paths = {name: build.binary(name) for name in NODE_COMMANDS}
    paths.update({name: containerd_dir() / name for name in CONTAINERD_COMMANDS})
    paths["coredns"] = coredns_binary()
    paths["pause"] = pause_binary()
    return paths


def ensure() -> dict[str, Path]:
    """Paths of every binary the control plane and the node run, building what is missing."""
    wanted = {**build.ensure(build.KUBERNETES_COMMANDS + NODE_COMMANDS), **node_binaries()}
    if all(path.exists() for path in wanted.values()):
        return wanted
    with build._build_lock():
        started = time.monotonic()
        if not all((containerd_dir() / name).exists() for name in CONTAINERD_COMMANDS):
            _build_containerd()
        if not coredns_binary().exists():
            _build_coredns()
        if not pause_binary().exists():
            _build_pause()
        _say(f"node binaries built in {time.monotonic() - started:.0f}s; cached in {BIN}")
    return wanted


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
