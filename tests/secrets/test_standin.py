"""The Vault stand-in answers the way Vault's HTTP API documents it.

The agent's tests are only as good as the stand-in, so its shapes are pinned
here: the envelope, ``{"errors": [...]}`` with Vault's status codes, KV v1/v2,
leases that end with their token, and the fault controls.
"""

from __future__ import annotations

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
from tests.support import free_port, wait_for

ENVELOPE = {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info"}


def call(
    vault: VaultStandIn | str,
    method: str,
    path: str,
    token: str | None = None,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    base = vault if isinstance(vault, str) else vault.addr
    request = urllib.request.Request(
        f"{base}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={**({"X-Vault-Token": token} if token else {}), **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def login(vault: VaultStandIn, role: str = "app", jwt: str | None = None) -> dict[str, Any]:
    status, answer = call(
        vault, "POST", "/v1/auth/kubernetes/login", body={"role": role, "jwt": jwt or JWT}
    )
    assert status == 200, answer
    auth: dict[str, Any] = answer["auth"]
    return auth


JWT = make_jwt("app", "shop")


def test_login_answers_vaults_auth_block(vault: VaultStandIn) -> None:
    status, answer = call(
        vault, "POST", "/v1/auth/kubernetes/login", body={"role": "app", "jwt": JWT}
    )
    assert status == 200
    assert answer.keys() >= ENVELOPE
    auth = answer["auth"]
    assert auth["client_token"].startswith("hvs.")
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True
    assert "default" in auth["policies"]
    assert auth["metadata"] == {
        "role": "app",
        "service_account_name": "app",
        "service_account_namespace": "shop",
    }
    assert vault.logins[-1]["sub"] == "system:serviceaccount:shop:app"


@pytest.mark.parametrize(
    ("role", "jwt", "status", "error"),
    [
        ("nope", JWT, 400, 'invalid role name "nope"'),
        ("app", make_jwt("other", "shop"), 403, "service account name not authorized"),
        ("app", make_jwt("app", "elsewhere"), 403, "namespace not authorized"),
        ("app", make_jwt("app", "shop", exp=int(time.time()) - 5), 403, "permission denied"),
        ("app", "not-a-jwt", 400, "error validating token: not a compact JWS"),
    ],
)
def test_login_refusals_use_the_errors_shape(
    vault: VaultStandIn, role: str, jwt: str, status: int, error: str
) -> None:
    got, answer = call(vault, "POST", "/v1/auth/kubernetes/login", body={"role": role, "jwt": jwt})
    assert (got, answer) == (status, {"errors": [error]})


def test_kv2_versions_and_soft_delete(vault: VaultStandIn) -> None:
    token = login(vault)["client_token"]
    vault.put_kv2("app/config", {"api_key": "k-2"})
    status, answer = call(vault, "GET", "/v1/secret/data/app/config", token)
    assert status == 200
    assert answer["data"]["data"] == {"api_key": "k-2"}
    assert answer["data"]["metadata"]["version"] == 2
    assert answer["data"]["metadata"]["deletion_time"] == ""
    assert answer["lease_id"] == ""
    assert answer["lease_duration"] == 0
    status, answer = call(vault, "GET", "/v1/secret/data/app/config?version=1", token)
    assert answer["data"]["data"]["api_key"] == "k-123"
    vault.delete_kv2("app/config")
    status, answer = call(vault, "GET", "/v1/secret/data/app/config", token)
    assert status == 404
    assert answer["data"]["data"] is None
    assert answer["data"]["metadata"]["deletion_time"]
    assert call(vault, "GET", "/v1/secret/data/app/none", token) == (404, {"errors": []})


def test_kv1_ttl_is_a_lease_duration_hint(vault: VaultStandIn) -> None:
    token = login(vault)["client_token"]
    status, answer = call(vault, "GET", "/v1/kv/app/legacy", token)
    assert status == 200
    assert answer["data"] == {"user": "old", "ttl": "1h"}
    assert (answer["lease_id"], answer["lease_duration"]) == ("", 3600)


def test_policies_and_tokens(vault: VaultStandIn) -> None:
    token = login(vault)["client_token"]
    assert call(vault, "GET", "/v1/secret/data/other", token) == (
        403,
        {"errors": ["permission denied"]},
    )
    assert call(vault, "GET", "/v1/secret/data/app/config", "hvs.bogus")[0] == 403
    status, answer = call(vault, "GET", "/v1/auth/token/lookup-self", token)
    assert status == 200
    assert 3590 <= answer["data"]["ttl"] <= 3600
    assert answer["data"]["renewable"] is True
    status, answer = call(
        vault, "POST", "/v1/auth/token/renew-self", token, body={"increment": "1h"}
    )
    assert status == 200
    assert answer["auth"]["lease_duration"] == 3600
    assert answer["warnings"] is None
    assert call(vault, "POST", "/v1/auth/token/revoke-self", token) == (204, {})
    assert call(vault, "GET", "/v1/auth/token/lookup-self", token)[0] == 403


def test_capped_token_renewal_warns(vault: VaultStandIn) -> None:
    vault.add_role("short", ["app"], ["shop"], ["secret/"], token_ttl=60, token_max_ttl=90)
    token = login(vault, "short")["client_token"]
    status, answer = call(
        vault, "POST", "/v1/auth/token/renew-self", token, body={"increment": 3600}
    )
    assert status == 200
    assert 85 <= answer["auth"]["lease_duration"] <= 90
    assert "capped" in answer["warnings"][0]


def test_dynamic_credentials_lease_renewal_and_cap(vault: VaultStandIn) -> None:
    vault.add_database_role("app", default_ttl=60, max_ttl=100)
    token = login(vault)["client_token"]
    status, answer = call(vault, "GET", "/v1/database/creds/app", token)
    assert status == 200
    lease_id = answer["lease_id"]
    assert lease_id.startswith("database/creds/app/")
    assert (answer["lease_duration"], answer["renewable"]) == (60, True)
    assert set(answer["data"]) == {"username", "password"}
    renew = {"lease_id": lease_id, "increment": 60}
    status, answer = call(vault, "PUT", "/v1/sys/leases/renew", token, body=renew)
    assert status == 200
    assert (answer["lease_id"], answer["lease_duration"], answer["warnings"]) == (
        lease_id,
        60,
        None,
    )
    status, answer = call(
        vault, "PUT", "/v1/sys/leases/renew", token, body={"lease_id": lease_id, "increment": "5m"}
    )
    assert 95 <= answer["lease_duration"] <= 100  # capped by max_ttl
    assert "capped" in answer["warnings"][0]
    status, answer = call(vault, "PUT", "/v1/sys/leases/lookup", token, body={"lease_id": lease_id})
    assert status == 200
    assert answer["data"]["id"] == lease_id
    status, answer = call(vault, "PUT", "/v1/sys/leases/renew", token, body={"lease_id": "x/y"})
    assert (status, answer) == (400, {"errors": ["lease not found"]})


def test_leases_end_with_the_token_that_created_them(vault: VaultStandIn) -> None:
    vault.add_database_role("app", default_ttl=600, max_ttl=6000)
    first = login(vault)["client_token"]
    second = login(vault)["client_token"]
    lease_id = call(vault, "GET", "/v1/database/creds/app", first)[1]["lease_id"]
    assert vault.active_leases() == [lease_id]
    vault.expire_tokens()  # the first token ends: so does its lease
    second = login(vault)["client_token"]
    status, answer = call(vault, "PUT", "/v1/sys/leases/renew", second, body={"lease_id": lease_id})
    assert (status, answer) == (400, {"errors": ["lease not found"]})
    lease_id = call(vault, "GET", "/v1/database/creds/app", second)[1]["lease_id"]
    call(vault, "POST", "/v1/auth/token/revoke-self", second)
    assert lease_id not in vault.active_leases()


def test_non_renewable_lease_refuses_renewal(vault: VaultStandIn) -> None:
    vault.add_database_role("app", default_ttl=60, renewable=False)
    token = login(vault)["client_token"]
    lease_id = call(vault, "GET", "/v1/database/creds/app", token)[1]["lease_id"]
    assert call(vault, "PUT", "/v1/sys/leases/renew", token, body={"lease_id": lease_id}) == (
        400,
        {"errors": ["lease is not renewable"]},
    )


def test_faults_and_namespace(vault: VaultStandIn) -> None:
    token = login(vault)["client_token"]
    path = "/v1/secret/data/app/config"
    vault.sealed = True
    assert call(vault, "GET", path, token) == (503, {"errors": ["Vault is sealed"]})
    vault.sealed, vault.standby = False, True
    assert call(vault, "GET", path, token) == (429, {"errors": ["node is in standby mode"]})
    vault.standby, vault.rate_limited = False, True
    status, answer = call(vault, "GET", path, token)
    assert status == 429
    assert "rate limit quota exceeded" in answer["errors"][0]
    vault.rate_limited = False
    vault.state.namespace = "team-a"
    assert call(vault, "GET", path, token)[0] == 403
    assert call(vault, "GET", path, token, headers={"X-Vault-Namespace": "team-a"})[0] == 200
    assert vault.namespaces_seen[-1] == "team-a"


def test_admin_controls_over_http(vault: VaultStandIn) -> None:
    token = login(vault)["client_token"]
    path = "/v1/secret/data/app/config"
    assert call(vault, "POST", "/_standin/seal") == (204, {})
    assert call(vault, "GET", path, token)[0] == 503
    assert call(vault, "POST", "/_standin/unseal")[0] == 204
    assert call(vault, "POST", "/_standin/rate-limit")[0] == 204
    assert call(vault, "GET", path, token)[0] == 429
    assert call(vault, "POST", "/_standin/unlimit")[0] == 204
    assert call(vault, "POST", "/_standin/kv2", body={"path": "app/config", "data": {"a": "b"}})
    assert call(vault, "GET", path, token)[1]["data"]["data"] == {"a": "b"}
    assert call(vault, "POST", "/_standin/expire-tokens")[0] == 204
    assert call(vault, "GET", path, token)[0] == 403
    _status, answer = call(vault, "GET", "/_standin/calls")
    assert ["GET", path] in answer["calls"]
    assert call(vault, "POST", "/_standin/nope") == (
        404,
        {"errors": ["unknown stand-in control 'nope'"]},
    )
    assert call(vault, "POST", "/_standin/down", body={"seconds": 1})[0] == 204

    def refused() -> bool:
        try:
            call(vault, "GET", "/_standin/calls")
        except urllib.error.URLError as exc:
            return isinstance(exc.reason, ConnectionRefusedError)
        return False

    wait_for(refused, timeout=5, what="connection refused while down")
    wait_for(lambda: call(vault, "GET", "/_standin/calls")[0] == 200, what="back up")


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
