"""The app's user cannot read the Vault token, in any reload mode.

For each reload mode (none, a URL, a signal) a pod asking for secrets is
rendered by ``render()`` and run as a kubelet would (tests/kubelet.py): the
init container and the refresher against the Vault stand-in, and, for a
signal, the container that sends it. The processes share one PID namespace,
as ``shareProcessNamespace: true`` pods do. Once the refresher holds its
token, a process runs as the app's user with the app container's mounts and
tries every way in: each process's ``environ``, ``cmdline``, ``mem`` and
``/proc/PID/root`` (the refresher's state and token directories through it),
and the token paths directly. Nothing it reads may contain the Vault token or
the service account JWT.

The last test runs the refresher as the app's user (what signal mode once
rendered) and shows the same search then finds the token.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from injector.core.model import NamespaceInfo
from injector.core.render import render
from injector.core.settings import Settings
from standins.vault import VaultStandIn, make_jwt
from tests import kubelet
from tests.support import Processes, free_port, http_status, wait_for

ok, why = kubelet.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)
APP_UID = 1000
P = "sidecar.example.io/"
# Runs as the app's user: everything it can read, from every process it can see.
SNOOP = r"""
import os, sys
found = []
def grab(path, limit=1 << 20):
    try:
        with open(path, "rb") as f:
            found.append(f.read(limit))
        print("read", path)
    except OSError as e:
        print("refused", path, e.errno)
me = os.getpid()
for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
    if pid == me:
        continue
    for part in ("environ", "cmdline"):
        grab(f"/proc/{pid}/{part}")
    try:
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
            for line in maps:
                span, perms = line.split()[:2]
                if "r" not in perms or "[v" in line:
                    continue
                start, end = (int(x, 16) for x in span.split("-"))
                try:
                    mem.seek(start)
                    found.append(mem.read(min(end - start, 1 << 24)))
                except OSError:
                    continue
        print("read mem", pid)
    except OSError as e:
        print("refused mem", pid, e.errno)
    for inside in ("/var/run/sidecar/state/handoff.json", "/var/run/sidecar/token/token"):
        grab(f"/proc/{pid}/root{inside}")
for path in ("/var/run/sidecar/state/handoff.json", "/var/run/sidecar/token/token"):
    grab(path)
secrets = sys.argv[1:]
hits = [s for s in secrets if any(s.encode() in blob for blob in found)]
print("HITS", len(hits))
"""


@pytest.fixture
def vault() -> Iterator[VaultStandIn]:
    server = VaultStandIn()
    server.add_role("app", ["app"], ["shop"], ["secret/data/app/"])
    server.put_kv2("app/db", {"password": "s3cret-value-1f2e"})
    yield server
    server.stop()


def pod(vault_addr: str, reload: str | None) -> dict[str, Any]:
    annotations = {
        P + "inject": "true",
        P + "secret-db": "secret/data/app/db",
        P + "secrets-role": "app",
        P + "secrets-vault-addr": vault_addr,
        P + "secrets-mode": "both",
    }
    if reload:
        annotations[P + "reload"] = reload
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "shop", "namespace": "shop", "annotations": annotations},
        "spec": {
            "securityContext": {"fsGroup": 2000},
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.io/shop:1",
                    "command": [sys.executable, "-c", "import time; time.sleep(600)"],
                    "securityContext": {"runAsUser": APP_UID, "runAsGroup": APP_UID},
                }
            ],
        },
    }


@pytest.fixture
def running() -> Iterator[Processes]:
    processes = Processes()
    yield processes
    processes.stop()


def containers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def on_port(container: dict[str, Any], port: int) -> dict[str, Any]:
    """The container with its agent on 127.0.0.1:port: these processes share the
    host's network, where the fixed ports may be taken by other tests."""
    env = [e for e in container.get("env", []) if e["name"] != "SIDECAR_AGENT_ADDR"]
    env.append({"name": "SIDECAR_AGENT_ADDR", "value": f"127.0.0.1:{port}"})
    return {**container, "env": env}


def run_pod(
    tmp: Path,
    vault: VaultStandIn,
    running: Processes,
    reload: str | None,
    refresher_user: int | None = None,
) -> list[str]:
    """Render, run the secrets containers, then snoop as the app's user; its output."""
    spec = render(pod(vault.addr, reload), NamespaceInfo("shop"), Settings()).pod["spec"]
    by_name = containers(spec)
    jwt = make_jwt("app", "shop")
    with kubelet.Pod(tmp / "pod", fs_group=spec["securityContext"]["fsGroup"]) as run:
        run.volume("sidecar-vault-token").joinpath("token").write_text(jwt)
        refs = {"metadata.namespace": "shop"}
        init = run.start_container(by_name["sidecar-secrets-init"], field_refs=refs)
        assert init.wait(60) == 0
        refresher = dict(by_name["sidecar-secrets"])
        if refresher_user is not None:  # the planted fault: the old signal design
            sc = {**refresher["securityContext"], "runAsUser": refresher_user}
            refresher["securityContext"] = sc | {"runAsGroup": refresher_user}
        ready = free_port()
        for name, container in by_name.items():
            if name in ("sidecar-secrets-init", "app") or name.startswith("sidecar-proxy"):
                continue
            spec_to_run = refresher if name == "sidecar-secrets" else container
            port = ready if name == "sidecar-secrets" else free_port()
            running.add(run.start_container(on_port(spec_to_run, port), field_refs=refs))
        wait_for(
            lambda: http_status(f"http://127.0.0.1:{ready}/ready") == 200,
            timeout=30,
            what="the refresher ready (it holds a token)",
        )
        with vault.lock:
            tokens = list(vault.state.tokens)
        app = by_name["app"]
        mounts = [
            kubelet.Mount(m["name"], m["mountPath"], m.get("readOnly", False))
            for m in app.get("volumeMounts", [])
        ]
        snoop = run.run(
            [sys.executable, "-c", SNOOP, *tokens, jwt],
            user=APP_UID,
            group=APP_UID,
            mounts=mounts,
            timeout=120,
        )
    assert snoop.returncode == 0, snoop.stderr
    return snoop.stdout.splitlines()


@pytest.mark.parametrize("reload", [None, "http://127.0.0.1:1/-/reload", "signal:SIGHUP"])
def test_the_apps_user_cannot_read_the_vault_token(
    tmp_path: Path, vault: VaultStandIn, running: Processes, reload: str | None
) -> None:
    lines = run_pod(tmp_path, vault, running, reload)
    assert "HITS 0" in lines, lines


def test_the_search_finds_a_token_the_apps_user_could_read(
    tmp_path: Path, vault: VaultStandIn, running: Processes
) -> None:
    """The refresher as the app's user, as signal mode once rendered it."""
    lines = run_pod(tmp_path, vault, running, "http://127.0.0.1:1/-/reload", APP_UID)
    assert "HITS 0" not in lines, lines
