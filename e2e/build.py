"""Build the control plane's binaries from Go modules, once, into a cache.

kube-apiserver cannot be ``go install``ed: k8s.io/kubernetes' go.mod replaces
every ``k8s.io/*`` staging module with ``./staging/...``. A wrapper module
that requires ``k8s.io/kubernetes vX`` and replaces each staging module with
its published ``v0.Y.Z`` tag builds it from the Go module proxy alone. The
staging list and the ``godebug`` line are read from that release's own go.mod
(fetched by ``go mod download``), not hard-coded. etcd is built the same way
from ``go.etcd.io/etcd/server/v3``.

Binaries land in ``~/.cache/sidecar-injector/bin/`` (``$SIDECAR_E2E_CACHE``
overrides the root); only the first run builds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

KUBERNETES_VERSION = "v1.36.4"
ETCD_VERSION = "v3.6.5"
CACHE = Path(os.environ.get("SIDECAR_E2E_CACHE", Path.home() / ".cache" / "sidecar-injector"))
BIN = CACHE / "bin"


class BuildError(RuntimeError):
    pass


def _go(args: list[str], cwd: Path, log: Path) -> None:
    env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0")
    with log.open("ab") as out:
        out.write(f"\n$ go {' '.join(args)}\n".encode())
        out.flush()
        result = subprocess.run(
            ["go", *args], cwd=cwd, env=env, stdout=out, stderr=out, check=False
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"`go {' '.join(args)}` failed in {cwd} (log {log}):\n{tail}")


def _module_file(module: str, version: str, work: Path, log: Path) -> str:
    env = dict(os.environ, GOFLAGS="-mod=mod")
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        log.write_text(result.stdout + result.stderr)
        raise BuildError(
            f"go mod download {module}@{version} failed: {result.stdout.strip()} "
            f"{result.stderr.strip()}"
        )
    return Path(json.loads(result.stdout)["GoMod"]).read_text()


def kube_apiserver() -> Path:
    target = BIN / f"kube-apiserver-{KUBERNETES_VERSION}"
    if target.exists():
        return target
    minor = KUBERNETES_VERSION.split(".")[1]
    staging_tag = "v0." + ".".join(KUBERNETES_VERSION.lstrip("v").split(".")[1:])
    work = CACHE / "build" / f"kube-apiserver-{KUBERNETES_VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    _say(
        f"building kube-apiserver {KUBERNETES_VERSION} from Go modules "
        f"(first run only; 10-20 minutes on 2 cores; log {log})"
    )
    (work / "go.mod").write_text("module e2e/kubeapiserver\n\ngo 1.26\n")
    upstream = _module_file("k8s.io/kubernetes", KUBERNETES_VERSION, work, log)
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", upstream, re.M)))
    if not staging:
        raise BuildError(
            f"no staging replaces found in k8s.io/kubernetes {KUBERNETES_VERSION} go.mod"
        )
    godebug = re.search(r"^godebug .*$", upstream, re.M)
    lines = ["module e2e/kubeapiserver", "", "go 1.26", ""]
    if godebug:
        lines += [godebug.group(0), ""]
    lines += [f"require k8s.io/kubernetes {KUBERNETES_VERSION}", "", "replace ("]
    lines += [f"\t{module} => {module} {staging_tag}" for module in staging]
    lines += [")", ""]
    (work / "go.mod").write_text("\n".join(lines))
    (work / "tools.go").write_text(
        '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n'
    )
    _go(["mod", "tidy"], work, log)
    ldflags = " ".join(
        [
            "-s",
            "-w",
            f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
            "-X k8s.io/component-base/version.gitMajor=1",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ]
    )
    BIN.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    _go(
        [
            "build",
            "-trimpath",
            f"-ldflags={ldflags}",
            "-o",
            str(tmp),
            "k8s.io/kubernetes/cmd/kube-apiserver",
        ],
        work,
        log,
    )
    tmp.rename(target)
    return target


def etcd() -> Path:
    target = BIN / f"etcd-{ETCD_VERSION}"
    if target.exists():
        return target
    work = CACHE / "build" / f"etcd-{ETCD_VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    _say(f"building etcd {ETCD_VERSION} from Go modules (first run only; log {log})")
    (work / "go.mod").write_text(
        f"module e2e/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
    )
    (work / "main.go").write_text(
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    _go(["mod", "tidy"], work, log)
    BIN.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    _go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "."], work, log)
    tmp.rename(target)
    return target


def _say(message: str) -> None:
    print(f"e2e: {message}", file=sys.stderr, flush=True)


def main() -> int:
    try:
        print(etcd())
        print(kube_apiserver())
    except BuildError as exc:
        print(f"e2e: build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
