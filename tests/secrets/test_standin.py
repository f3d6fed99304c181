"""What only the stand-in serves: its fault controls (standby, rate limits,
slowness, outages), non-renewable leases, namespaces, expired JWTs, and
running as a process. What a real Vault serves too is pinned against both in
``test_vault_api.py``.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from standins.vault import VaultStandIn, make_jwt
from tests.secrets.test_vault_api import BAD_TOKEN, call
from tests.support import free_port, wait_for


def login(vault: VaultStandIn, role: str = "app", jwt: str | None = None) -> dict[str, Any]:
    status, answer = call(
        vault.addr, "POST", "/v1/auth/kubernetes/login", body={"role": role, "jwt": jwt or JWT}
    )
    assert status == 200, answer
    auth: dict[str, Any] = answer["auth"]
    return auth


JWT = make_jwt("app", "shop")


def test_expired_jwt_is_refused_like_a_failed_token_review(vault: VaultStandIn) -> None:
    jwt = make_jwt("app", "shop", exp=int(time.time()) - 5)
    got = call(vault.addr, "POST", "/v1/auth/kubernetes/login", body={"role": "app", "jwt": jwt})
    assert got == (403, {"errors": ["permission denied"]})


def test_non_renewable_lease_refuses_renewal(vault: VaultStandIn) -> None:
    vault.add_database_role("app", default_ttl=60, renewable=False)
    token = login(vault)["client_token"]
    lease_id = call(vault.addr, "GET", "/v1/database/creds/app", token)[1]["lease_id"]
    assert call(vault.addr, "PUT", "/v1/sys/leases/renew", token, body={"lease_id": lease_id}) == (
        400,
        {"errors": ["lease is not renewable"]},
    )


def test_faults_and_namespace(vault: VaultStandIn) -> None:
    token = login(vault)["client_token"]
    path = "/v1/secret/data/app/config"
    vault.sealed = True
    assert call(vault.addr, "GET", path, token) == (503, {"errors": ["Vault is sealed"]})
    vault.sealed, vault.standby = False, True
    assert call(vault.addr, "GET", path, token) == (429, {"errors": ["node is in standby mode"]})
    vault.standby, vault.rate_limited = False, True
    status, answer = call(vault.addr, "GET", path, token)
    assert status == 429
    assert "rate limit quota exceeded" in answer["errors"][0]
    vault.rate_limited = False
    vault.state.namespace = "team-a"
    assert call(vault.addr, "GET", path, token)[0] == 403
    assert call(vault.addr, "GET", path, token, headers={"X-Vault-Namespace": "team-a"})[0] == 200
    assert vault.namespaces_seen[-1] == "team-a"


def test_admin_controls_over_http(vault: VaultStandIn) -> None:
    token = login(vault)["client_token"]
    path = "/v1/secret/data/app/config"
    assert call(vault.addr, "POST", "/_standin/seal") == (204, {})
    assert call(vault.addr, "GET", path, token)[0] == 503
    assert call(vault.addr, "POST", "/_standin/unseal")[0] == 204
    assert call(vault.addr, "POST", "/_standin/rate-limit")[0] == 204
    assert call(vault.addr, "GET", path, token)[0] == 429
    assert call(vault.addr, "POST", "/_standin/unlimit")[0] == 204
    assert call(
        vault.addr, "POST", "/_standin/kv2", body={"path": "app/config", "data": {"a": "b"}}
    )
    assert call(vault.addr, "GET", path, token)[1]["data"]["data"] == {"a": "b"}
    assert call(vault.addr, "POST", "/_standin/expire-tokens")[0] == 204
    assert call(vault.addr, "GET", path, token)[0] == 403
    _status, answer = call(vault.addr, "GET", "/_standin/calls")
    assert ["GET", path] in answer["calls"]
    assert call(vault.addr, "POST", "/_standin/partial", body={"count": 1})[0] == 204
    with pytest.raises(http.client.IncompleteRead):
        call(vault.addr, "GET", path, token)  # half the answer, then the connection closes
    assert call(vault.addr, "GET", path, token) == (403, {"errors": [BAD_TOKEN]})  # whole again
    assert call(vault.addr, "POST", "/_standin/nope") == (
        404,
        {"errors": ["unknown stand-in control 'nope'"]},
    )
    assert call(vault.addr, "POST", "/_standin/down", body={"seconds": 1})[0] == 204

    def refused() -> bool:
        try:
            call(vault.addr, "GET", "/_standin/calls")
        except urllib.error.URLError as exc:
            return isinstance(exc.reason, ConnectionRefusedError)
        return False

    wait_for(refused, timeout=5, what="connection refused while down")
    wait_for(lambda: call(vault.addr, "GET", "/_standin/calls")[0] == 200, what="back up")


@pytest.fixture
def standin_process(tmp_path: Path) -> Iterator[str]:
    config = {
        "kv2": {"app/config": {"password": "p"}},
        "kv1": {"app/legacy": {"user": "u"}},
        "database": {"app": {"default_ttl": 30, "max_ttl": 60}},
        "roles": {
            "app": {
                "sa_names": ["app"],
                "sa_namespaces": ["shop"],
                "policies": ["secret/", "kv/", "database/"],
                "token_ttl": 120,
            }
        },
    }
    (tmp_path / "vault.json").write_text(json.dumps(config))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "standins.vault",
            "--listen",
            f"127.0.0.1:{port}",
            "--config",
            str(tmp_path / "vault.json"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip().endswith(f"127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_runs_as_a_process_with_a_config_file(standin_process: str) -> None:
    status, answer = call(
        standin_process, "POST", "/v1/auth/kubernetes/login", body={"role": "app", "jwt": JWT}
    )
    assert status == 200
    assert answer["auth"]["lease_duration"] == 120
    token = answer["auth"]["client_token"]
    assert call(standin_process, "GET", "/v1/secret/data/app/config", token)[1]["data"]["data"] == {
        "password": "p"
    }
    assert call(standin_process, "GET", "/v1/kv/app/legacy", token)[1]["data"] == {"user": "u"}
    assert call(standin_process, "GET", "/v1/database/creds/app", token)[1]["lease_duration"] == 30
