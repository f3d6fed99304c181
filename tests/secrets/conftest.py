from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.lifecycle import StopEvent
from sidecar.secrets.main import run
from sidecar.secrets.settings import load
from standins.vault import VaultStandIn, make_jwt
from tests.support import ReloadApp, free_port, http_status, wait_for


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
    vault: VaultStandIn, jwt_file: Path, out: Path, secrets: list[dict[str, str]], *extra: str
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
