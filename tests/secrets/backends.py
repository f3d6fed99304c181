"""The Vault the secrets tests run against, behind one interface.

Tests that take the ``backend`` fixture run twice: against ``standin``
(``standins.vault``, our reading of Vault's API) and against ``vault``, a
real HashiCorp Vault dev server (``e2e.vault_dev``) whose kubernetes auth
sends every login to a real API server (``e2e.cluster``) and whose database
engine creates real PostgreSQL users (``e2e.postgres``). What both serve is
asserted the same way; where they differ, the real one is right and the
stand-in is fixed.

Roles take policies as path prefixes (``secret/data/app/``); the real
backend writes them as an ACL policy named after the role. Calls are counted
from the stand-in's log of requests, and from Vault's file audit device
(requests made with the set-up's root token left out); ``tokens`` come from
the same log, written raw (``log_raw``: a test's throwaway server only). ``restart`` and
``start`` after ``stop`` bring the real server back empty, so its set-up is
replayed, as an operator's automation would.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from e2e import cluster, vault_dev
from e2e.postgres import Postgres
from standins.vault import VaultStandIn, make_jwt

Json = dict[str, Any]
OPERATIONS = {"GET": ("read",), "POST": ("update", "create"), "PUT": ("update", "create")}
# The database role's SQL: a login role that expires with the lease.
CREATION = (
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
)


class Backend(ABC):
    name: str
    addr: str

    @abstractmethod
    def jwt(self, service_account: str = "app", namespace: str = "shop", aud: str = "vault") -> str:
        """A service-account token as the kubelet projects it."""

    @abstractmethod
    def add_role(
        self,
        name: str,
        sa_names: list[str],
        sa_namespaces: list[str],
        policies: list[str],
        *,
        token_ttl: int = 3600,
        token_max_ttl: int = 86400,
        audience: str = "vault",
    ) -> None: ...

    @abstractmethod
    def remove_policy(self, role: str) -> None:
        """The role's tokens stay valid but may no longer read anything."""

    @abstractmethod
    def put_kv2(self, path: str, data: Json) -> None: ...

    @abstractmethod
    def delete_kv2(self, path: str, version: int = 0) -> None:
        """Soft-delete one version (0: the latest)."""

    @abstractmethod
    def put_kv1(self, path: str, data: Json) -> None: ...

    @abstractmethod
    def add_database_role(self, name: str, default_ttl: int, max_ttl: int) -> None: ...

    @abstractmethod
    def database_login(self, username: str, password: str) -> bool:
        """Whether these dynamic credentials log in to the database now."""

    @abstractmethod
    def database_user_exists(self, username: str) -> bool: ...

    @abstractmethod
    def times(self, method: str, path: str) -> list[float]:
        """When the agent called ``method path*`` (path without /v1/), oldest first."""

    def count(self, method: str, path: str) -> int:
        return len(self.times(method, path))

    @abstractmethod
    def tokens(self) -> list[str]:
        """Every client token a login was answered with (what must never be printed)."""

    @abstractmethod
    def revoke_lease(self, lease_id: str) -> None: ...

    @abstractmethod
    def expire_tokens(self) -> None:
        """Every token kubernetes auth issued ends now, and the leases they created."""

    @abstractmethod
    def seal(self) -> None: ...

    @abstractmethod
    def unseal(self) -> None: ...

    @abstractmethod
    def restart(self) -> None:
        """Every token and lease is gone; the set-up is back."""

    @abstractmethod
    def stop(self) -> None:
        """Connections are refused until ``start``."""

    @abstractmethod
    def start(self) -> None: ...

    def close(self) -> None:
        self.stop()


class StandInBackend(Backend):
    name = "standin"

    def __init__(self) -> None:
        self.server = VaultStandIn()
        self.addr = self.server.addr

    def jwt(self, service_account: str = "app", namespace: str = "shop", aud: str = "vault") -> str:
        return make_jwt(service_account, namespace, aud=[aud], exp=int(time.time()) + 3600)

    def add_role(
        self,
        name: str,
        sa_names: list[str],
        sa_namespaces: list[str],
        policies: list[str],
        *,
        token_ttl: int = 3600,
        token_max_ttl: int = 86400,
        audience: str = "vault",
    ) -> None:
        self.server.add_role(
            name,
            sa_names,
            sa_namespaces,
            policies,
            token_ttl=token_ttl,
            token_max_ttl=token_max_ttl,
            audience=audience,
        )

    def remove_policy(self, role: str) -> None:
        self.server.remove_policies(role)

    def put_kv2(self, path: str, data: Json) -> None:
        self.server.put_kv2(path, data)

    def delete_kv2(self, path: str, version: int = 0) -> None:
        self.server.delete_kv2(path, version=version)

    def put_kv1(self, path: str, data: Json) -> None:
        self.server.put_kv1(path, data)

    def add_database_role(self, name: str, default_ttl: int, max_ttl: int) -> None:
        self.server.add_database_role(name, default_ttl=default_ttl, max_ttl=max_ttl)

    def database_login(self, username: str, password: str) -> bool:
        return self.server.credentials_valid(username, password)

    def database_user_exists(self, username: str) -> bool:
        return self.server.credentials_valid(username)

    def times(self, method: str, path: str) -> list[float]:
        return self.server.times(method, "/v1/" + path)

    def tokens(self) -> list[str]:
        with self.server.lock:
            return list(self.server.state.tokens)

    def revoke_lease(self, lease_id: str) -> None:
        self.server.revoke_lease(lease_id)

    def expire_tokens(self) -> None:
        self.server.expire_tokens()

    def seal(self) -> None:
        self.server.sealed = True

    def unseal(self) -> None:
        self.server.sealed = False

    def restart(self) -> None:
        self.server.stop()
        self.server.forget_tokens()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()


@dataclass(frozen=True)
class Kube:
    """A control plane with the ServiceAccounts the tests log in as."""

    info: cluster.ClusterInfo
    api: cluster.Api
    reviewer_jwt: str

    @classmethod
    def prepare(cls, info: cluster.ClusterInfo) -> Kube:
        api = cluster.Api(info)
        for namespace, name in (("shop", "app"), ("shop", "other"), ("elsewhere", "app")):
            vault_dev.ensure_service_account(api, namespace, name)
        return cls(info, api, vault_dev.reviewer_token(api))


class RealBackend(Backend):
    name = "vault"

    def __init__(self, state_dir: Path, kube: Kube, postgres: Postgres, tls: bool = False) -> None:
        self.kube = kube
        self.postgres = postgres
        self.vault = vault_dev.DevVault(state_dir, tls=tls)
        self.audit = state_dir / "audit.log"
        self.setup: list[tuple[str, Json]] = []
        self.start()
        self.addr = self.vault.addr

    def _provision(self) -> None:
        vault = self.vault
        # log_raw: tokens in the clear (not HMACed), so tests can look for them in output.
        options = {"file_path": str(self.audit), "log_raw": "true"}
        vault.write("sys/audit/file", {"type": "file", "options": options})
        vault_dev.configure_kubernetes_auth(vault, self.kube.info, self.kube.reviewer_jwt)
        vault.write("sys/mounts/kv", {"type": "kv", "options": {"version": "1"}})
        vault.write("sys/mounts/database", {"type": "database"})
        vault.write(
            "database/config/pg",
            {
                "plugin_name": "postgresql-database-plugin",
                "connection_url": self.postgres.connection_url(),
                "username": "postgres",
                "password": self.postgres.password,
                "allowed_roles": "*",
            },
        )
        for path, body in self.setup:
            vault.write(path, body)

    def _write(self, path: str, body: Json) -> None:
        self.vault.write(path, body)
        self.setup.append((path, body))

    def jwt(self, service_account: str = "app", namespace: str = "shop", aud: str = "vault") -> str:
        return vault_dev.service_account_token(self.kube.api, namespace, service_account, aud)

    def add_role(
        self,
        name: str,
        sa_names: list[str],
        sa_namespaces: list[str],
        policies: list[str],
        *,
        token_ttl: int = 3600,
        token_max_ttl: int = 86400,
        audience: str = "vault",
    ) -> None:
        rules = "".join(f'path "{prefix}*" {{ capabilities = ["read"] }}\n' for prefix in policies)
        self._write(f"sys/policies/acl/{name}", {"policy": rules})
        self._write(
            f"auth/kubernetes/role/{name}",
            {
                "bound_service_account_names": sa_names,
                "bound_service_account_namespaces": sa_namespaces,
                "audience": audience,
                "token_policies": [name],
                "token_ttl": token_ttl,
                "token_max_ttl": token_max_ttl,
            },
        )

    def remove_policy(self, role: str) -> None:
        self.vault.delete(f"sys/policies/acl/{role}")
        self.setup = [(p, b) for p, b in self.setup if p != f"sys/policies/acl/{role}"]

    def put_kv2(self, path: str, data: Json) -> None:
        self._write(f"secret/data/{path}", {"data": data})

    def delete_kv2(self, path: str, version: int = 0) -> None:
        if version:
            self.vault.write(f"secret/delete/{path}", {"versions": [version]})
        else:
            self.vault.delete(f"secret/data/{path}")

    def put_kv1(self, path: str, data: Json) -> None:
        self._write(f"kv/{path}", data)

    def add_database_role(self, name: str, default_ttl: int, max_ttl: int) -> None:
        self._write(
            f"database/roles/{name}",
            {
                "db_name": "pg",
                "creation_statements": [CREATION],
                "default_ttl": default_ttl,
                "max_ttl": max_ttl,
            },
        )

    def database_login(self, username: str, password: str) -> bool:
        return self.postgres.login(username, password)[0] == 0

    def database_user_exists(self, username: str) -> bool:
        return self.postgres.role_exists(username)

    def times(self, method: str, path: str) -> list[float]:
        found = []
        for entry in _audit_entries(self.audit, "request"):
            request, auth = entry.get("request") or {}, entry.get("auth") or {}
            if "root" in (auth.get("policies") or []):
                continue  # the set-up's own calls
            if request.get("operation") in OPERATIONS[method] and str(
                request.get("path", "")
            ).startswith(path):
                found.append(_timestamp(entry["time"]))
        return found

    def tokens(self) -> list[str]:
        found = []
        for entry in _audit_entries(self.audit, "response"):
            if str((entry.get("request") or {}).get("path", "")).endswith("/login"):
                token = ((entry.get("response") or {}).get("auth") or {}).get("client_token")
                if token:
                    found.append(str(token))
        return found

    def revoke_lease(self, lease_id: str) -> None:
        self.vault.write("sys/leases/revoke", {"lease_id": lease_id})

    def expire_tokens(self) -> None:
        self.vault.write("sys/leases/revoke-prefix/auth/kubernetes/login", {})

    def seal(self) -> None:
        self.vault.seal()

    def unseal(self) -> None:
        self.vault.unseal()

    def restart(self) -> None:
        self.vault.restart()
        self._provision()

    def stop(self) -> None:
        self.vault.stop()

    def start(self) -> None:
        self.vault.start()
        self._provision()


def _audit_entries(path: Path, kind: str) -> list[Json]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # being written
        if entry.get("type") == kind:
            entries.append(entry)
    return entries


def _timestamp(text: str) -> float:
    """RFC 3339 with nanoseconds (Vault's audit ``time``) -> seconds since the epoch."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    micro = (fraction + "000000")[:6]
    return datetime.fromisoformat(f"{whole}.{micro}+00:00").timestamp()
