from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from standins.vault import VaultStandIn, make_jwt


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
