"""A Vault-compatible stand-in server, for tests and e2e only.

The secrets role is tested against a real HashiCorp Vault (v1.21.0, built
from Go modules: ``e2e.vault_build``) wherever a real Vault can produce the
situation; this stand-in stays for what a real Vault cannot do on demand:
a standby node (429), rate limits (429), slow answers (``delay``), answers
cut off half-way (``partial``), an outage
of a chosen length (``down``), non-renewable leases from a GET, expired JWTs
and ``X-Vault-Namespace`` (Enterprise). Every test that both can serve runs
against both (``tests/secrets``, the ``backend`` fixture).

Checked against Vault v1.21.0 by ``tests/secrets/test_vault_api.py`` (and so
kept identical): the envelope (``request_id``, ``lease_id``, ``renewable``,
``lease_duration``, ``data``, ``wrap_info``, ``warnings``, ``auth``); the login
answer (policies, metadata, TTL, renewable) and its refusals with Vault's
status and wording (400 ``invalid role name "x"``, ``missing role``, ``missing
jwt``; 403 ``service account name not authorized``, ``namespace not
authorized``, ``invalid audience (aud) claim: ...``, and a bare ``permission
denied`` for an unverifiable JWT or an unknown auth mount); 403 errors worded
as Vault's go-multierror (``1 error occurred:\n\t* permission denied\n\n``,
``... invalid token`` for a dead token; bare without a token); KV v2 versions,
``?version=N``, 404 ``{"errors": []}`` for a missing path or version, and 404
*with* ``data.data: null`` and the metadata for a soft-deleted version (the
latest or a pinned one); KV v1
``lease_duration`` from a ``ttl`` key (else the mount's 2764800) without a
lease; token ``lookup-self``/``renew-self``/``revoke-self`` and capped
renewals' warning (``TTL of "1h" exceeded the effective max_ttl of "1m30s";
TTL value is capped accordingly``); ``database/creds`` leases, their renewal,
cap, lookup, ``lease not found`` and ``lease_id must be specified``; leases
that end with the token that created them; 503 ``Vault is sealed``.

Endpoints:

* ``POST /v1/auth/<mount>/login`` (kubernetes auth: ``{"role", "jwt"}``). The
  JWT's claims are decoded and checked against the role's bound service
  account names, namespaces and audience, and ``exp`` when present; its
  signature is NOT verified (Vault sends a TokenReview to the API server;
  tests mint unsigned tokens with ``make_jwt``).
* ``POST /v1/auth/token/renew-self``, ``GET /v1/auth/token/lookup-self``,
  ``POST /v1/auth/token/revoke-self``.
* KV v2: ``GET /v1/<mount>/data/<path>[?version=N]``.
* KV v1: ``GET /v1/<mount>/<path>``.
* Dynamic database credentials: ``GET /v1/database/creds/<role>`` with a
  lease ``database/creds/<role>/<id>``.
* ``PUT /v1/sys/leases/renew`` (``{"lease_id", "increment"}``),
  ``PUT /v1/sys/leases/lookup`` and ``PUT /v1/sys/leases/revoke``. Increments
  are seconds or duration strings (``3600``, ``"1h"``).

Headers: ``X-Vault-Token``; ``X-Vault-Namespace`` is recorded and, when the
server is given a namespace, required to match. Policies are simplified to a
list of path prefixes per auth role, answered as one policy named after it.

Fault injection for tests: ``sealed`` (503 everywhere), ``standby`` (429
"node is in standby mode"), ``rate_limited`` (429 "rate limit quota
exceeded"), ``delay`` seconds before answering, ``partial`` answers cut off
half-way (the whole length announced, half the body sent, the connection
closed: the next N answers), ``expire_tokens()`` (every
token then answers 403, and its leases are gone), ``forget_tokens()`` (a
restarted dev server), ``revoke_lease()``, ``remove_policies()``,
``stop()``/``start()`` (connection refused, same port). ``calls``/``timeline``
record every request (method, path); ``logins`` the claims of every accepted
login. The same controls are served under ``/_standin/`` for e2e (``POST``
``seal``, ``unseal``, ``standby``, ``active``, ``rate-limit``, ``unlimit``,
``expire-tokens``, ``delay`` ``{"seconds"}``, ``partial`` ``{"count"}``,
``down`` ``{"seconds"}``,
``kv2`` ``{"path", "data"}``, ``kv1`` ``{"path", "data"}``, ``reset-calls``;
``GET calls``). They are not part of Vault's API.

Run: ``python -m standins.vault --listen 127.0.0.1:8200 [--config FILE]``
(FILE: JSON with ``kv2``, ``kv1``, ``database``, ``roles``, ``namespace``).
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Json = dict[str, Any]


class VaultError(Exception):
    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(status, errors)
        self.status = status
        self.errors = list(errors)


@dataclass
class Role:
    bound_service_account_names: list[str]
    bound_service_account_namespaces: list[str]
    policies: list[str]  # path prefixes this role may read
    token_ttl: int = 3600
    token_max_ttl: int = 86400
    audience: str | None = None  # when set, the JWT's aud must contain it


@dataclass
class Token:
    role: str
    policies: list[str]
    ttl: int
    issued: float
    expires: float
    max_expires: float
    renewable: bool = True
    revoked: bool = False


@dataclass
class Lease:
    lease_id: str
    ttl: int
    expires: float
    max_expires: float
    renewable: bool
    token: str  # the token that created it: the lease ends with it
    revoked: bool = False
    credentials: tuple[str, str] = ("", "")  # database user and password it stands for


@dataclass
class DatabaseRole:
    default_ttl: int = 3600
    max_ttl: int = 86400
    renewable: bool = True


@dataclass
class State:
    kv2: dict[str, dict[str, list[Json]]] = field(default_factory=lambda: {"secret": {}})
    kv1: dict[str, dict[str, Json]] = field(default_factory=lambda: {"kv": {}})
    database: dict[str, DatabaseRole] = field(default_factory=dict)
    roles: dict[str, dict[str, Role]] = field(default_factory=lambda: {"kubernetes": {}})
    tokens: dict[str, Token] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    namespace: str | None = None


class VaultStandIn:
    """The server; methods on it are the test's controls."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = State()
        self.lock = threading.RLock()
        self.sealed = False
        self.standby = False
        self.rate_limited = False
        self.delay = 0.0
        self.partial = 0  # how many of the next answers are cut off half-way
        self.logins: list[Json] = []  # claims of every accepted login
        self.calls: list[tuple[str, str]] = []
        self.timeline: list[tuple[float, str, str]] = []  # (time.time(), method, path)
        self.namespaces_seen: list[str | None] = []
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self.start()

    # --- lifecycle -------------------------------------------------------
    def start(self) -> None:
        self._server = ThreadingHTTPServer(self._address, _handler(self))
        self._server.daemon_threads = True
        self._address = (self._address[0], int(self._server.server_address[1]))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def addr(self) -> str:
        return f"http://{self._address[0]}:{self._address[1]}"

    # --- test controls -----------------------------------------------------
    def put_kv2(self, path: str, data: Json, mount: str = "secret") -> int:
        with self.lock:
            versions = self.state.kv2.setdefault(mount, {}).setdefault(path, [])
            versions.append(
                {"data": data, "created_time": _now(), "deletion_time": "", "destroyed": False}
            )
            return len(versions)

    def delete_kv2(self, path: str, mount: str = "secret", version: int = 0) -> None:
        """Soft-delete one version (0: the latest)."""
        with self.lock:
            versions = self.state.kv2[mount][path]
            versions[version - 1 if version else -1]["deletion_time"] = _now()

    def put_kv1(self, path: str, data: Json, mount: str = "kv") -> None:
        with self.lock:
            self.state.kv1.setdefault(mount, {})[path] = dict(data)

    def add_database_role(self, name: str, **kwargs: Any) -> None:
        with self.lock:
            self.state.database[name] = DatabaseRole(**kwargs)

    def add_role(
        self,
        name: str,
        sa_names: list[str],
        sa_namespaces: list[str],
        policies: list[str],
        mount: str = "kubernetes",
        **kwargs: Any,
    ) -> None:
        with self.lock:
            self.state.roles.setdefault(mount, {})[name] = Role(
                sa_names, sa_namespaces, policies, **kwargs
            )

    def expire_tokens(self) -> None:
        with self.lock:
            for token in self.state.tokens.values():
                token.expires = 0.0

    def forget_tokens(self) -> None:
        """What a restarted dev server knows of tokens and leases: nothing."""
        with self.lock:
            self.state.tokens.clear()
            self.state.leases.clear()

    def revoke_lease(self, lease_id: str) -> None:
        with self.lock:
            self.state.leases[lease_id].revoked = True

    def remove_policies(self, role: str, mount: str = "kubernetes") -> None:
        """The role's policies are deleted: its tokens stay valid and may read nothing."""
        with self.lock:
            self.state.roles[mount][role].policies = []
            for token in self.state.tokens.values():
                if token.role == role:
                    token.policies = []

    def credentials_valid(self, username: str, password: str | None = None) -> bool:
        """Whether a live lease stands for this database user (and password)."""
        now = time.time()
        with self.lock:
            return any(
                lease.credentials[0] == username
                and password in (None, lease.credentials[1])
                and self._alive(lease, now)
                for lease in self.state.leases.values()
            )

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()
            self.timeline.clear()
            self.logins.clear()

    def down_for(self, seconds: float) -> None:
        """Refuse connections for ``seconds``, then listen on the same port again."""
        threading.Thread(target=self.stop, daemon=True).start()
        threading.Timer(seconds, self.start).start()

    def cut_off(self) -> bool:
        """Whether this answer is one of the ``partial`` ones."""
        with self.lock:
            if self.partial <= 0:
                return False
            self.partial -= 1
            return True

    def times(self, method: str, prefix: str) -> list[float]:
        with self.lock:
            return [t for t, m, p in self.timeline if m == method and p.startswith(prefix)]

    def count(self, method: str, prefix: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.calls if m == method and p.startswith(prefix))

    def active_leases(self) -> list[str]:
        now = time.time()
        with self.lock:
            return [lid for lid, lease in self.state.leases.items() if self._alive(lease, now)]

    # --- request handling --------------------------------------------------
    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        token: str | None,
        namespace: str | None,
        body: Json,
    ) -> tuple[int, Json]:
        if path.startswith("/_standin/"):
            return self._admin(method, path, body)
        with self.lock:
            self.calls.append((method, path))
            self.timeline.append((time.time(), method, path))
            self.namespaces_seen.append(namespace)
        if self.delay:
            time.sleep(self.delay)
        if self.sealed:
            raise VaultError(503, "Vault is sealed")
        if self.standby:
            raise VaultError(429, "node is in standby mode")
        if self.rate_limited:
            raise VaultError(
                429, f"request path {path[len('/v1/') :]!r}: rate limit quota exceeded"
            )
        if not path.startswith("/v1/"):
            raise VaultError(404, f"no handler for route {path!r}")
        if self.state.namespace is not None and namespace != self.state.namespace:
            raise VaultError(403, "permission denied")
        route = path[len("/v1/") :]
        with self.lock:
            if route.startswith("auth/") and route.endswith("/login") and method in ("POST", "PUT"):
                return 200, self._login(route[len("auth/") : -len("/login")], body)
            current = self._token(token)
            if route == "auth/token/lookup-self" and method == "GET":
                return 200, self._envelope(data=self._lookup(token or "", current))
            if route == "auth/token/renew-self" and method in ("POST", "PUT"):
                return 200, self._renew_self(token or "", current, body)
            if route == "auth/token/revoke-self" and method in ("POST", "PUT"):
                current.revoked = True  # and with it every lease it created
                return 204, {}
            if route == "sys/leases/renew" and method in ("POST", "PUT"):
                return 200, self._renew_lease(body)
            if route == "sys/leases/lookup" and method in ("POST", "PUT"):
                return 200, self._envelope(data=self._lookup_lease(body))
            if route == "sys/leases/revoke" and method in ("POST", "PUT"):
                self._lease(str(body.get("lease_id", ""))).revoked = True
                return 204, {}
            if method not in ("GET", "LIST"):
                raise VaultError(405, f"unsupported operation {method} on {route}")
            self._authorize(current, route)
            return 200, self._read(route, query, token or "")

    def _admin(self, method: str, path: str, body: Json) -> tuple[int, Json]:
        action = path[len("/_standin/") :]
        if action == "calls":
            return 200, {"calls": [list(c) for c in self.calls]}
        if method != "POST":
            raise VaultError(405, "use POST")
        if action in ("seal", "unseal"):
            self.sealed = action == "seal"
        elif action in ("standby", "active"):
            self.standby = action == "standby"
        elif action == "expire-tokens":
            self.expire_tokens()
        elif action in ("rate-limit", "unlimit"):
            self.rate_limited = action == "rate-limit"
        elif action == "delay":
            self.delay = float(body.get("seconds", 0))
        elif action == "partial":
            self.partial = int(body.get("count", 1))
        elif action == "down":
            self.down_for(float(body.get("seconds", 1)))
        elif action == "reset-calls":
            self.reset_calls()
        elif action == "kv2":
            self.put_kv2(str(body["path"]), dict(body["data"]), str(body.get("mount", "secret")))
        elif action == "kv1":
            self.put_kv1(str(body["path"]), dict(body["data"]), str(body.get("mount", "kv")))
        else:
            raise VaultError(404, f"unknown stand-in control {action!r}")
        return 204, {}

    def _login(self, mount: str, body: Json) -> Json:
        roles = self.state.roles.get(mount)
        if roles is None:
            raise VaultError(403, "permission denied")  # no such auth mount
        name, jwt = body.get("role"), body.get("jwt")
        if not name or not jwt:
            raise VaultError(400, "missing role" if not name else "missing jwt")
        role = roles.get(str(name))
        if role is None:
            raise VaultError(400, f'invalid role name "{name}"')
        claims = _jwt_claims(str(jwt))
        account = claims.get("kubernetes.io", {}).get("serviceaccount", {})
        sa = account.get("name")
        ns = claims.get("kubernetes.io", {}).get("namespace")
        if isinstance(claims.get("exp"), int | float) and claims["exp"] <= time.time():
            raise VaultError(403, "permission denied")  # what a failed TokenReview gives
        if not _bound(sa, role.bound_service_account_names):
            raise VaultError(403, "service account name not authorized")
        if not _bound(ns, role.bound_service_account_namespaces):
            raise VaultError(403, "namespace not authorized")
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences or []
        if role.audience is not None and role.audience not in audiences:
            raise VaultError(
                403,
                "invalid audience (aud) claim: audience claim does not match any expected audience",
            )
        self.logins.append(claims)
        now = time.time()
        client_token = "hvs." + secrets.token_urlsafe(24)
        self.state.tokens[client_token] = Token(
            str(name),
            role.policies,
            role.token_ttl,
            now,
            now + role.token_ttl,
            now + role.token_max_ttl,
        )
        return self._envelope(
            auth={
                "client_token": client_token,
                "accessor": secrets.token_urlsafe(12),
                "policies": sorted(["default", str(name)]),
                "token_policies": sorted(["default", str(name)]),
                "metadata": {
                    "role": name,
                    "service_account_name": sa,
                    "service_account_namespace": ns,
                    "service_account_secret_name": "",
                    "service_account_uid": account.get("uid"),
                },
                "lease_duration": role.token_ttl,
                "renewable": True,
                "entity_id": str(uuid.uuid4()),
                "token_type": "service",
                "orphan": True,
            }
        )

    def _token(self, value: str | None) -> Token:
        token = self.state.tokens.get(value or "")
        if token is None or token.revoked or token.expires <= time.time():
            if not value:
                raise VaultError(403, "permission denied")
            raise VaultError(403, _multierror("permission denied", "invalid token"))
        return token

    def _lookup(self, value: str, token: Token) -> Json:
        return {
            "id": value,
            "policies": token.policies,
            "renewable": token.renewable,
            "ttl": max(0, int(token.expires - time.time())),
            "creation_ttl": token.ttl,
            "issue_time": _now(token.issued),
            "expire_time": _now(token.expires),
            "explicit_max_ttl": 0,
            "type": "service",
            "meta": {"role": token.role},
        }

    def _renew_self(self, value: str, token: Token, body: Json) -> Json:
        increment = _seconds(str(body.get("increment") or "")) or token.ttl
        now = time.time()
        new_expiry = min(now + increment, token.max_expires)
        token.expires = new_expiry
        duration = round(new_expiry - now)
        warnings = _capped(increment, token.max_expires - now)
        return self._envelope(
            warnings=warnings,
            auth={
                "client_token": value,
                "policies": token.policies,
                "lease_duration": duration,
                "renewable": duration > 0,
            },
        )

    def _alive(self, lease: Lease, now: float) -> bool:
        owner = self.state.tokens.get(lease.token)
        owner_alive = owner is not None and not owner.revoked and owner.expires > now
        return not lease.revoked and lease.expires > now and owner_alive

    def _lease(self, lease_id: str) -> Lease:
        if not lease_id:
            raise VaultError(400, "lease_id must be specified")
        lease = self.state.leases.get(lease_id)
        if lease is None or not self._alive(lease, time.time()):
            raise VaultError(400, "lease not found")
        return lease

    def _lookup_lease(self, body: Json) -> Json:
        lease = self._lease(str(body.get("lease_id", "")))
        return {
            "id": lease.lease_id,
            "renewable": lease.renewable,
            "ttl": max(0, int(lease.expires - time.time())),
            "expire_time": _now(lease.expires),
        }

    def _renew_lease(self, body: Json) -> Json:
        lease = self._lease(str(body.get("lease_id", "")))
        if not lease.renewable:
            raise VaultError(400, "lease is not renewable")
        increment = _seconds(str(body.get("increment") or "")) or lease.ttl
        now = time.time()
        lease.expires = min(now + increment, lease.max_expires)
        duration = round(lease.expires - now)
        warnings = _capped(increment, lease.max_expires - now)
        return {
            "request_id": str(uuid.uuid4()),
            "lease_id": lease.lease_id,
            "renewable": lease.renewable,
            "lease_duration": duration,
            "data": None,
            "wrap_info": None,
            "warnings": warnings,
            "auth": None,
        }

    def _authorize(self, token: Token, route: str) -> None:
        if not any(route.startswith(prefix) for prefix in token.policies):
            raise VaultError(403, _multierror("permission denied"))

    def _read(self, route: str, query: dict[str, list[str]], token: str) -> Json:
        mount, _, rest = route.partition("/")
        if mount == "database" and rest.startswith("creds/"):
            return self._creds(rest[len("creds/") :], token)
        if mount in self.state.kv2 and rest.startswith("data/"):
            return self._kv2(mount, rest[len("data/") :], query)
        if mount in self.state.kv1:
            data = self.state.kv1[mount].get(rest)
            if data is None:
                raise VaultError(404)
            ttl = _seconds(str(data.get("ttl", "0")))
            return self._envelope(data=dict(data), lease_duration=ttl or 2764800)
        raise VaultError(404)

    def _kv2(self, mount: str, path: str, query: dict[str, list[str]]) -> Json:
        versions = self.state.kv2[mount].get(path)
        if not versions:
            raise VaultError(404)
        wanted = int(query.get("version", ["0"])[0] or 0) or len(versions)
        if not 1 <= wanted <= len(versions):
            raise VaultError(404)
        version = versions[wanted - 1]
        metadata = {
            "created_time": version["created_time"],
            "custom_metadata": None,
            "deletion_time": version["deletion_time"],
            "destroyed": version["destroyed"],
            "version": wanted,
        }
        if version["deletion_time"] or version["destroyed"]:
            raise _NotFoundWithBody(self._envelope(data={"data": None, "metadata": metadata}))
        return self._envelope(data={"data": dict(version["data"]), "metadata": metadata})

    def _creds(self, name: str, token: str) -> Json:
        role = self.state.database.get(name)
        if role is None:
            raise VaultError(400, f"unknown role: {name}")
        now = time.time()
        lease_id = f"database/creds/{name}/{secrets.token_urlsafe(16)}"
        self.state.leases[lease_id] = Lease(
            lease_id,
            role.default_ttl,
            now + role.default_ttl,
            now + role.max_ttl,
            role.renewable,
            token,
        )
        data = {
            "username": f"v-k8s-{name}-{secrets.token_hex(4)}",
            "password": secrets.token_urlsafe(18),
        }
        self.state.leases[lease_id].credentials = (data["username"], data["password"])
        return self._envelope(
            data=data, lease_id=lease_id, lease_duration=role.default_ttl, renewable=role.renewable
        )

    @staticmethod
    def _envelope(
        data: Json | None = None,
        auth: Json | None = None,
        lease_id: str = "",
        lease_duration: int = 0,
        renewable: bool = False,
        warnings: list[str] | None = None,
    ) -> Json:
        return {
            "request_id": str(uuid.uuid4()),
            "lease_id": lease_id,
            "renewable": renewable,
            "lease_duration": lease_duration,
            "data": data,
            "wrap_info": None,
            "warnings": warnings,
            "auth": auth,
        }


class _NotFoundWithBody(VaultError):
    def __init__(self, body: Json) -> None:
        super().__init__(404)
        self.body = body


def _seconds(text: str) -> int:
    """Vault's duration strings (a KV v1 ``ttl`` key, an ``increment``): 3600, 10s, 30m, 1h."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text or 0)
    except ValueError:
        raise VaultError(400, f"invalid duration {text!r}") from None


def _multierror(*errors: str) -> str:
    """How Vault words several errors in one (go-multierror)."""
    count = f"{len(errors)} error{'s' if len(errors) > 1 else ''} occurred:"
    return count + "".join(f"\n\t* {error}" for error in errors) + "\n\n"


def _duration(seconds: float) -> str:
    """Vault's wording of a duration in warnings: 1h, 1m30s, 45s."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"


def _capped(increment: int, remaining: float) -> list[str] | None:
    """The warning of a renewal that the max TTL caps (None if it does not)."""
    if increment <= remaining:
        return None
    return [
        f'TTL of "{_duration(increment)}" exceeded the effective max_ttl of '
        f'"{_duration(remaining)}"; TTL value is capped accordingly'
    ]


def _bound(value: object, allowed: list[str]) -> bool:
    return "*" in allowed or value in allowed


def _now(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(at))


def _jwt_claims(jwt: str) -> Json:
    try:
        payload = jwt.split(".")[1]
        claims: Json = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise VaultError(403, "permission denied") from exc  # as Vault: no detail
    return claims


def make_jwt(service_account: str, namespace: str, **extra: Any) -> str:
    """An unsigned service-account-shaped JWT, for tests (the stand-in reads claims only).

    ``extra`` adds claims, e.g. ``exp`` or ``jti``."""

    def part(obj: Json) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {
        "iss": "https://kubernetes.default.svc",
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "aud": ["vault"],
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": "1"},
        },
        **extra,
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"


def _handler(vault: VaultStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "vault-standin"

        def log_message(self, *args: object) -> None:
            return

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
                if not isinstance(body, dict):
                    raise VaultError(400, "request body must be a JSON object")
                status, answer = vault.handle(
                    self.command,
                    unquote(url.path),
                    parse_qs(url.query),
                    self.headers.get("X-Vault-Token"),
                    self.headers.get("X-Vault-Namespace"),
                    body,
                )
            except _NotFoundWithBody as exc:
                status, answer = 404, exc.body
            except VaultError as exc:
                status, answer = exc.status, {"errors": exc.errors}
            except ValueError:
                status, answer = 400, {"errors": ["failed to parse JSON input"]}
            data = b"" if status == 204 else json.dumps(answer).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data and not url.path.startswith("/_standin/") and vault.cut_off():
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
                return
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_LIST = _serve

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m standins.vault")
    parser.add_argument("--listen", default="127.0.0.1:8200")
    parser.add_argument("--config", help="JSON: kv2, kv1, database, roles, namespace")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    vault = VaultStandIn(host, int(port))
    if args.config:
        with open(args.config) as f:
            config = json.load(f)
        for path, data in config.get("kv2", {}).items():
            vault.put_kv2(path, data)
        for path, data in config.get("kv1", {}).items():
            vault.put_kv1(path, data)
        for name, role in config.get("database", {}).items():
            vault.add_database_role(name, **role)
        for name, role in config.get("roles", {}).items():
            extra = {k: role[k] for k in ("token_ttl", "token_max_ttl") if k in role}
            vault.add_role(name, role["sa_names"], role["sa_namespaces"], role["policies"], **extra)
        vault.state.namespace = config.get("namespace")
    print(f"vault stand-in listening on {vault.addr}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
