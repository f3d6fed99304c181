"""Build HashiCorp Vault from Go modules, once, into the e2e cache.

The secrets role is tested against a real Vault (``tests/secrets``); this
builds it the way ``e2e.build`` builds the control plane, with its helpers:
the same cache (``~/.cache/sidecar-injector/bin/vault-<version>``), the same
build lock, the same Go (from PATH or the module proxy), nothing cloned.

Vault's go.mod replaces its nested modules (``api``, ``sdk``,
``api/auth/...``) with local directories (``=> ./sdk``), which a module zip
does not hold, and a dependency's replaces are ignored anyway. So a wrapper
module requires ``github.com/hashicorp/vault`` and maps each of those to the
published version Vault's go.mod requires, and copies Vault's other replaces
verbatim. All of it is read from that release's own go.mod (``go mod edit
-json``), not hard-coded.

Pitfalls (``/work/shared/vault-recipe``): v1.21.0 is the newest 1.21 release
that builds this way (later ones need an sdk that was never published), and
``GOPROXY`` is pinned to the proxy alone: a module the proxy lacks must fail
the build, not send ``go`` to a VCS host.

Licence: Vault 1.21 is under the Business Source License. The tests run it;
it is never shipped in our images or manifests.

``python -m e2e.vault_build`` builds (or finds) it and prints its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from e2e import build

VAULT_VERSION = os.environ.get("SIDECAR_VAULT_VERSION", "v1.21.0")
MODULE = "github.com/hashicorp/vault"


def binary() -> Path:
    return build.BIN / f"vault-{VAULT_VERSION}"


def _env() -> dict[str, str]:
    # The proxy alone (no ",direct"), and the toolchain we picked (no switching).
    return dict(build._go_env(), GOPROXY=build._proxy(), GOTOOLCHAIN="local")


def _go(args: list[str], cwd: Path, log: Path, what: str) -> str:
    """``build._go`` with the proxy pinned; stdout returned (``go mod edit -json``)."""
    command = "go " + " ".join(args)
    build._note_lock(what, log)  # whoever waits for the lock sees what we build
    with log.open("ab") as out:
        out.write(f"\n$ (cd {cwd} && {command})\n".encode())
        out.flush()
        result = subprocess.run(
            [build.go_command(), *args],
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=out,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise build.BuildError(f"`{command}` failed in {cwd} (full log: {log}):\n{tail}")
    return result.stdout.decode()


def _upstream(work: Path, log: Path) -> dict[str, Any]:
    """Vault's own go.mod, parsed by ``go mod edit -json``."""
    url = f"{build._proxy()}/{MODULE}/@v/{VAULT_VERSION}.mod"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            (work / "upstream.mod").write_bytes(response.read())
    except OSError as exc:
        raise build.BuildError(f"{url}: {exc}") from exc
    answer = _go(["mod", "edit", "-json", "upstream.mod"], work, log, f"reading {url}")
    parsed: dict[str, Any] = json.loads(answer)
    return parsed


def _module(entry: dict[str, str]) -> str:
    return f"{entry['Path']} {entry['Version']}" if entry.get("Version") else entry["Path"]


def wrapper_go_mod(upstream: dict[str, Any]) -> str:
    """The wrapper module's go.mod, derived from Vault's own go.mod."""
    required = {r["Path"]: r["Version"] for r in upstream.get("Require") or []}
    lines = ["module sidecar-injector.e2e/vault", "", f"go {upstream['Go']}", ""]
    lines += [f"require {MODULE} {VAULT_VERSION}", ""]
    for replace in upstream.get("Replace") or []:
        old, new = replace["Old"], replace["New"]
        if new["Path"].startswith("."):
            version = required.get(old["Path"])
            if version is None:
                raise build.BuildError(
                    f"{MODULE} {VAULT_VERSION}: {old['Path']} is replaced by {new['Path']} "
                    "but not required; no published version to use instead"
                )
            new = {"Path": old["Path"], "Version": version}
        lines.append(f"replace {_module(old)} => {_module(new)}")
    return "\n".join([*lines, ""])


def _build() -> None:
    work = build.CACHE / "build" / f"vault-{VAULT_VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    build._say(
        f"building vault {VAULT_VERSION} from Go modules: first run only, about 9 minutes "
        f"on 2 cores with empty Go caches, ~4.5 GB of memory while linking (log: {log})"
    )
    (work / "go.mod").write_text(wrapper_go_mod(_upstream(work, log)))
    (work / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{MODULE}"\n')
    _go(["mod", "tidy"], work, log, f"downloading the modules of vault {VAULT_VERSION}")
    build._say(f"compiling vault {VAULT_VERSION} (log: {log})")
    out = work / "vault.out"
    what = f"compiling vault {VAULT_VERSION}"
    _go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(out), MODULE], work, log, what)
    build.BIN.mkdir(parents=True, exist_ok=True)
    out.replace(binary())


def ensure() -> Path:
    """The path of the vault binary, building it if it is missing."""
    if binary().exists():
        return binary()
    with build._build_lock():
        if not binary().exists():
            started = time.monotonic()
            _build()
            build._say(f"vault built in {time.monotonic() - started:.0f}s; cached as {binary()}")
    return binary()


def main() -> int:
    try:
        path = ensure()
    except build.BuildError as exc:
        print(f"e2e: build failed: {exc}", file=sys.stderr)
        return 1
    print(f"vault\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
