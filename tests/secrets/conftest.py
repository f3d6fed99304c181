"""Fixtures: the Vault stand-in, and ``backend``: each test that takes it runs
against the stand-in and against a real Vault (``tests/secrets/backends.py``).

The real one needs a Vault binary and a control plane built from Go modules
(minutes, once; cached) and Debian's PostgreSQL. The builds happen before
the first test (a test's timeout must not include them). Without PostgreSQL
those runs skip saying what to install, unless ``SIDECAR_TESTS_NO_SKIP`` is
set (``.ci/run`` sets it: CI never skips them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import build, cluster, vault_build
from e2e.postgres import Postgres, PostgresError
from sidecar.lifecycle import StopEvent
from sidecar.secrets.main import run
from sidecar.secrets.settings import load
from standins.vault import VaultStandIn, make_jwt
from tests.secrets.backends import Backend, Kube, RealBackend, StandInBackend
from tests.support import ReloadApp, free_port, http_status, wait_for

REAL = pytest.mark.real_vault
BACKENDS = [pytest.param("standin"), pytest.param("vault", marks=REAL)]


@pytest.hookimpl(trylast=True)  # after -m/-k deselected what will not run
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Build what the real-Vault runs need before any test's timeout starts.
    A failed build fails those tests (``kube``), with its message; the rest run."""
    if any(item.get_closest_marker("real_vault") for item in items):
        try:
            vault_build.ensure()
            if not os.environ.get("SIDECAR_E2E_CLUSTER"):
                build.ensure()
        except build.BuildError as exc:
            BUILD_ERRORS.append(str(exc))


BUILD_ERRORS: list[str] = []


def private_dir(prefix: str) -> Path:
    """A temporary directory of this run; those of runs that died (SIGKILL: their
    processes died with them) are removed first."""
    for old in Path(tempfile.gettempdir()).glob(prefix + "*"):
        try:
            owner = int((old / OWNER).read_text())
        except (OSError, ValueError):
            continue  # being created, or not ours
        if not cluster._alive(owner):
            shutil.rmtree(old, ignore_errors=True)
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    (directory / OWNER).write_text(str(os.getpid()))
    return directory


OWNER = "owner.pid"


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """The control plane of ``e2e.cluster run`` if one is set, else a private one."""
    if BUILD_ERRORS:
        pytest.fail(f"the real Vault or the control plane could not be built: {BUILD_ERRORS[0]}")
    existing = os.environ.get("SIDECAR_E2E_CLUSTER")
    if existing:
        yield Kube.prepare(cluster.ClusterInfo.load(Path(existing)))
        return
    plane = cluster.ControlPlane(private_dir("sidecar-secrets-kube-"), detach=False)
    try:
        yield Kube.prepare(plane.start())
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    try:
        server = Postgres(private_dir("sidecar-secrets-pg-"))
    except PostgresError as exc:
        if os.environ.get("SIDECAR_TESTS_NO_SKIP"):
            raise
        pytest.skip(str(exc))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A Vault set up like the stand-in fixture: role app (shop/app), KV v2, KV v1, database."""
    server: Backend
    if request.param == "vault":
        postgres = request.getfixturevalue("postgres")
        server = RealBackend(tmp_path / "vault", request.getfixturevalue("kube"), postgres)
    else:
        server = StandInBackend()
    try:
        server.add_role(
            "app", ["app"], ["shop"], ["secret/data/app/", "kv/app/", "database/creds/"]
        )
        server.put_kv2("app/config", {"api_key": "k-123", "region": "eu"})
        server.put_kv1("app/legacy", {"user": "old", "ttl": "1h"})
        server.add_database_role("app", default_ttl=3600, max_ttl=86400)
        yield server
    finally:
        server.close()


@pytest.fixture
def token_file(backend: Backend, tmp_path: Path) -> Path:
    """The projected service-account token of shop/app (audience vault)."""
    path = tmp_path / "sa-token"
    path.write_text(backend.jwt())
    return path


@pytest.fixture
def vault() -> Iterator[VaultStandIn]:
    server = VaultStandIn()
    server.add_role(
        "app", ["app"], ["shop"], ["secret/data/app/", "kv/app/", "database/creds/"], token_ttl=3600
    )
    server.put_kv2("app/config", {"api_key": "k-123", "region": "eu"})
    server.put_kv1("app/legacy", {"user": "old", "ttl": "1h"})
    server.add_database_role("app", default_ttl=3600, max_ttl=86400)
    yield server
    server.stop()


@pytest.fixture
def jwt_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(make_jwt("app", "shop"))
    return path


def args(
    vault: VaultStandIn | Backend,
    jwt_file: Path,
    out: Path,
    secrets: list[dict[str, str]],
    *extra: str,
) -> list[str]:
    return [
        "--vault-addr",
        vault.addr,
        "--role",
        "app",
        "--token-file",
        str(jwt_file),
        "--secrets",
        json.dumps(secrets),
        "--secrets-dir",
        str(out / "secrets"),
        "--state-dir",
        str(out / "state"),
        "--log-level",
        "error",
        *extra,
    ]


@pytest.fixture
def app() -> Iterator[ReloadApp]:
    with ReloadApp() as reload_app:
        yield reload_app


class Refresher:
    """``sidecar secrets`` (no ``--init``) in a thread, stopped on exit."""

    def __init__(self, argv: list[str], wait_ready: bool = True) -> None:
        self.port = free_port()
        self.settings = load([*argv, "--agent-addr", f"127.0.0.1:{self.port}"], environ={})
        self.stop = StopEvent()
        self.wait_ready = wait_ready
        self.thread = threading.Thread(target=run, args=(self.settings, self.stop), daemon=True)

    def __enter__(self) -> Refresher:
        self.thread.start()
        wait_for(
            lambda: http_status(f"http://127.0.0.1:{self.port}/healthz") == 200,
            timeout=15,
            what="refresher serving",
        )
        if self.wait_ready:
            wait_for(lambda: self.ready() == 200, timeout=15, what="refresher ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def ready(self) -> int:
        return http_status(f"http://127.0.0.1:{self.port}/ready")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text: str = r.read().decode()
            return text


def credentials(path: Path) -> tuple[str, str]:
    """Username and password from a secret rendered as ``key: value`` lines."""
    lines = dict(line.split(": ", 1) for line in path.read_text().splitlines())
    return lines["username"], lines["password"]


def run_init(
    argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``sidecar secrets --init ARGV`` as a process, as the init container runs it."""
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "secrets", "--init", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    """What the pod shows: the last line on stderr (its termination message)."""
    return (result.stderr.strip().splitlines() or [""])[-1]
