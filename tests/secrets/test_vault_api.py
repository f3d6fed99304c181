"""The answers the agent relies on, asserted alike against a real Vault
(v1.21.0) and the stand-in: the envelope, ``{"errors": [...]}`` with Vault's
status codes and wording, kubernetes auth, KV v1/v2, token and lease
renewal with their caps, leases that end with their token.

These pin the stand-in to the real server: when Vault answers otherwise,
the ``vault`` run fails here first.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.secrets.backends import Backend
from tests.support import wait_for

ENVELOPE = {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info"}
DENIED = "1 error occurred:\n\t* permission denied\n\n"
BAD_TOKEN = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"


def call(
    base: str,
    method: str,
    path: str,
    token: str | None = None,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One request to the Vault at base: (status, its JSON answer)."""
    request = urllib.request.Request(
        f"{base}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={**({"X-Vault-Token": token} if token else {}), **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def login(backend: Backend, role: str = "app") -> dict[str, Any]:
    body = {"role": role, "jwt": backend.jwt()}
    status, answer = call(backend.addr, "POST", "/v1/auth/kubernetes/login", body=body)
    assert status == 200, answer
    auth: dict[str, Any] = answer["auth"]
    return auth


def test_login_answers_an_auth_block(backend: Backend) -> None:
    body = {"role": "app", "jwt": backend.jwt()}
    status, answer = call(backend.addr, "POST", "/v1/auth/kubernetes/login", body=body)
    assert status == 200
    assert answer.keys() >= ENVELOPE
    assert (answer["lease_id"], answer["lease_duration"], answer["data"]) == ("", 0, None)
    auth = answer["auth"]
    assert auth["client_token"].startswith("hvs.")
    assert (auth["lease_duration"], auth["renewable"]) == (3600, True)
    assert auth["policies"] == ["app", "default"]  # the role's policy, named after it
    assert (
        auth["metadata"].items()
        >= {
            "role": "app",
            "service_account_name": "app",
            "service_account_namespace": "shop",
            "service_account_secret_name": "",
        }.items()
    )
    assert (auth["token_type"], auth["orphan"]) == ("service", True)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"role": "nope"}, 400, 'invalid role name "nope"'),
        ({"sa": "other"}, 403, "service account name not authorized"),
        ({"namespace": "elsewhere"}, 403, "namespace not authorized"),
        (
            {"audience": "not-vault"},
            403,
            "invalid audience (aud) claim: audience claim does not match any expected audience",
        ),
        ({"jwt": "not-a-jwt"}, 403, "permission denied"),
        ({"jwt": ""}, 400, "missing jwt"),
        ({"role": ""}, 400, "missing role"),
        ({"mount": "nomount"}, 403, "permission denied"),
    ],
    ids=["role", "sa", "namespace", "audience", "garbage", "no-jwt", "no-role", "mount"],
)
def test_login_refusals(backend: Backend, body: dict[str, str], status: int, error: str) -> None:
    jwt = backend.jwt(
        body.get("sa", "app"), body.get("namespace", "shop"), body.get("audience", "vault")
    )
    request = {"role": body.get("role", "app"), "jwt": body.get("jwt", jwt)}
    path = f"/v1/auth/{body.get('mount', 'kubernetes')}/login"
    assert call(backend.addr, "POST", path, body=request) == (status, {"errors": [error]})


def test_kv2_versions_and_soft_delete(backend: Backend) -> None:
    token = login(backend)["client_token"]
    backend.put_kv2("app/config", {"api_key": "k-2"})
    status, answer = call(backend.addr, "GET", "/v1/secret/data/app/config", token)
    assert status == 200
    assert answer["data"]["data"] == {"api_key": "k-2"}
    metadata = answer["data"]["metadata"]
    assert (metadata["version"], metadata["deletion_time"], metadata["destroyed"]) == (2, "", False)
    assert (answer["lease_id"], answer["lease_duration"], answer["renewable"]) == ("", 0, False)
    status, answer = call(backend.addr, "GET", "/v1/secret/data/app/config?version=1", token)
    assert answer["data"]["data"]["api_key"] == "k-123"
    assert call(backend.addr, "GET", "/v1/secret/data/app/config?version=9", token) == (
        404,
        {"errors": []},
    )
    backend.delete_kv2("app/config")
    status, answer = call(backend.addr, "GET", "/v1/secret/data/app/config", token)
    assert status == 404  # with the version's metadata, not {"errors": [...]}
    assert answer["data"]["data"] is None
    assert answer["data"]["metadata"]["version"] == 2
    assert answer["data"]["metadata"]["deletion_time"]
    backend.delete_kv2("app/config", version=1)  # a pinned version
    status, answer = call(backend.addr, "GET", "/v1/secret/data/app/config?version=1", token)
    assert (status, answer["data"]["data"]) == (404, None)
    assert answer["data"]["metadata"]["version"] == 1
    assert answer["data"]["metadata"]["deletion_time"]
    assert call(backend.addr, "GET", "/v1/secret/data/app/none", token) == (404, {"errors": []})


def test_kv1_ttl_is_a_lease_duration_without_a_lease(backend: Backend) -> None:
    token = login(backend)["client_token"]
    backend.put_kv1("app/plain", {"user": "u"})
    status, answer = call(backend.addr, "GET", "/v1/kv/app/legacy", token)
    assert status == 200
    assert answer["data"] == {"user": "old", "ttl": "1h"}
    assert (answer["lease_id"], answer["lease_duration"], answer["renewable"]) == ("", 3600, False)
    status, answer = call(backend.addr, "GET", "/v1/kv/app/plain", token)
    assert (answer["lease_id"], answer["lease_duration"]) == ("", 2764800)  # the mount's 32 days
    assert call(backend.addr, "GET", "/v1/kv/app/none", token) == (404, {"errors": []})


def test_policies_and_tokens(backend: Backend) -> None:
    token = login(backend)["client_token"]
    addr = backend.addr
    assert call(addr, "GET", "/v1/secret/data/other", token) == (403, {"errors": [DENIED]})
    assert call(addr, "GET", "/v1/secret/data/app/config", "hvs.bogus") == (
        403,
        {"errors": [BAD_TOKEN]},
    )
    assert call(addr, "GET", "/v1/secret/data/app/config") == (
        403,
        {"errors": ["permission denied"]},
    )
    status, answer = call(addr, "GET", "/v1/auth/token/lookup-self", token)
    assert status == 200
    assert 3590 <= answer["data"]["ttl"] <= 3600
    assert answer["data"]["renewable"] is True
    status, answer = call(addr, "POST", "/v1/auth/token/renew-self", token, {"increment": "1h"})
    assert status == 200
    assert answer["auth"]["lease_duration"] == 3600
    assert answer["warnings"] is None
    assert call(addr, "POST", "/v1/auth/token/revoke-self", token) == (204, {})
    assert call(addr, "GET", "/v1/auth/token/lookup-self", token) == (403, {"errors": [BAD_TOKEN]})


def test_capped_token_renewal_warns(backend: Backend) -> None:
    backend.add_role("short", ["app"], ["shop"], ["secret/"], token_ttl=60, token_max_ttl=90)
    token = login(backend, "short")["client_token"]
    body = {"increment": 3600}
    status, answer = call(backend.addr, "POST", "/v1/auth/token/renew-self", token, body)
    assert status == 200
    assert 85 <= answer["auth"]["lease_duration"] <= 90
    (warning,) = answer["warnings"]
    assert warning.startswith('TTL of "1h" exceeded the effective max_ttl of "1m')
    assert warning.endswith('"; TTL value is capped accordingly')


def test_dynamic_credentials_lease_renewal_and_cap(backend: Backend) -> None:
    backend.add_database_role("app", default_ttl=60, max_ttl=100)
    token = login(backend)["client_token"]
    addr = backend.addr
    status, answer = call(addr, "GET", "/v1/database/creds/app", token)
    assert status == 200
    lease_id = answer["lease_id"]
    assert lease_id.startswith("database/creds/app/")
    assert (answer["lease_duration"], answer["renewable"]) == (60, True)
    assert set(answer["data"]) == {"username", "password"}
    assert backend.database_login(answer["data"]["username"], answer["data"]["password"])
    status, answer = call(
        addr, "PUT", "/v1/sys/leases/renew", token, {"lease_id": lease_id, "increment": 60}
    )
    assert status == 200
    assert (answer["lease_id"], answer["lease_duration"], answer["renewable"]) == (
        lease_id,
        60,
        True,
    )
    assert (answer["data"], answer["warnings"]) == (None, None)
    status, answer = call(
        addr, "PUT", "/v1/sys/leases/renew", token, {"lease_id": lease_id, "increment": "5m"}
    )
    assert 95 <= answer["lease_duration"] <= 100  # capped by max_ttl
    assert answer["warnings"][0].startswith('TTL of "5m" exceeded the effective max_ttl of "1m')
    status, answer = call(addr, "PUT", "/v1/sys/leases/lookup", token, {"lease_id": lease_id})
    assert status == 200
    assert (answer["data"]["id"], answer["data"]["renewable"]) == (lease_id, True)
    assert call(addr, "PUT", "/v1/sys/leases/renew", token, {"lease_id": "x/y"}) == (
        400,
        {"errors": ["lease not found"]},
    )
    assert call(addr, "PUT", "/v1/sys/leases/renew", token, {}) == (
        400,
        {"errors": ["lease_id must be specified"]},
    )
    assert call(addr, "GET", "/v1/database/creds/nope", token) == (
        400,
        {"errors": ["unknown role: nope"]},
    )


def test_leases_end_with_the_token_that_created_them(backend: Backend) -> None:
    backend.add_database_role("app", default_ttl=600, max_ttl=6000)
    first = login(backend)["client_token"]
    second = login(backend)["client_token"]
    answer = call(backend.addr, "GET", "/v1/database/creds/app", first)[1]
    lease_id, username = answer["lease_id"], answer["data"]["username"]
    # Any token allowed to renew may renew it, while its token lives.
    renew = {"lease_id": lease_id, "increment": 600}
    assert call(backend.addr, "PUT", "/v1/sys/leases/renew", second, renew)[0] == 200
    assert call(backend.addr, "POST", "/v1/auth/token/revoke-self", first) == (204, {})
    assert call(backend.addr, "PUT", "/v1/sys/leases/renew", second, renew) == (
        400,
        {"errors": ["lease not found"]},
    )
    wait_for(lambda: not backend.database_user_exists(username), what="the user dropped")


def test_sealed_answers_503(backend: Backend) -> None:
    token = login(backend)["client_token"]
    backend.seal()
    sealed = (503, {"errors": ["Vault is sealed"]})
    assert call(backend.addr, "GET", "/v1/secret/data/app/config", token) == sealed
    body = {"role": "app", "jwt": backend.jwt()}
    assert call(backend.addr, "POST", "/v1/auth/kubernetes/login", body=body) == sealed
    backend.unseal()
    assert call(backend.addr, "GET", "/v1/auth/token/lookup-self", token)[0] == 200
