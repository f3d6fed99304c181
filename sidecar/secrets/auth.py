"""Kubernetes auth: log in with the pod's service-account JWT, keep the token.

The JWT file is read on every login (projected tokens rotate). The client
token is renewed with ``renew-self`` at about 2/3 of its TTL; when Vault caps
a renewal (max TTL reached) or the token is not renewable, the agent logs in
afresh at about 85% of what is left. ``Denied`` on any call means the token
is no longer good: the caller logs in once more and retries once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sidecar.errors import SourceError
from sidecar.metrics import Registry
from sidecar.secrets.vault import Denied, Json, Rejected, VaultClient


@dataclass
class Token:
    value: str
    ttl: float  # seconds granted at issue or last renewal
    issued: float  # wall clock of issue or last renewal
    renewable: bool
    relogin: bool = False  # capped or not renewable: replace rather than renew

    @property
    def due(self) -> float:
        """When to act on this token (wall clock)."""
        if self.ttl <= 0:
            return float("inf")
        share = 0.85 if self.relogin or not self.renewable else 2 / 3
        return self.issued + self.ttl * share

    def to_json(self) -> Json:
        return {
            "value": self.value,
            "ttl": self.ttl,
            "issued": self.issued,
            "renewable": self.renewable,
            "relogin": self.relogin,
        }

    @classmethod
    def from_json(cls, data: Json) -> Token:
        return cls(
            str(data["value"]),
            float(data["ttl"]),
            float(data["issued"]),
            bool(data["renewable"]),
            bool(data.get("relogin", False)),
        )


class Auth:
    def __init__(
        self, client: VaultClient, mount: str, role: str, jwt_file: Path, registry: Registry
    ) -> None:
        self.client = client
        self.mount = mount
        self.role = role
        self.jwt_file = jwt_file
        self.token: Token | None = None
        self.logins = registry.counter("secrets_logins_total", "Vault logins")
        self.renewals = registry.counter(
            "secrets_renewals_total", "Renewals by kind (token or lease)", ("kind",)
        )

    def login(self) -> Token:
        try:
            jwt = self.jwt_file.read_text().strip()
        except OSError as exc:
            raise SourceError(
                f"service account token {self.jwt_file}: {exc.strerror}; the pod needs the "
                "projected token volume the injector adds"
            ) from exc
        try:
            answer = self.client.call(
                "POST", f"auth/{self.mount}/login", body={"role": self.role, "jwt": jwt}
            )
        except Rejected as exc:
            raise Rejected(f"role {self.role!r} rejected by auth/{self.mount}: {exc}") from exc
        except Denied as exc:
            raise Denied(
                f"login as role {self.role!r} denied at auth/{self.mount}: {exc} "
                "(check the role's bound service accounts and namespaces)"
            ) from exc
        auth = answer.get("auth") or {}
        if not auth.get("client_token"):
            raise SourceError(f"auth/{self.mount}/login answered without a client token")
        self.logins.inc()
        self.token = Token(
            str(auth["client_token"]),
            float(auth.get("lease_duration") or 0),
            time.time(),
            bool(auth.get("renewable")),
        )
        return self.token

    def current(self) -> str:
        if self.token is None:
            self.login()
        assert self.token is not None
        return self.token.value

    def adopt(self, token: Token) -> bool:
        """Reuse a handed-off token if Vault still takes it."""
        try:
            info = self.client.call("GET", "auth/token/lookup-self", token=token.value)
        except Denied:
            return False
        data = info.get("data") or {}
        self.token = Token(
            token.value,
            float(data.get("ttl") or 0),
            time.time(),
            bool(data.get("renewable")),
            token.relogin,
        )
        return True

    def maintain(self) -> None:
        """Renew or replace the token; call when ``token.due`` has passed."""
        token = self.token
        if token is None or token.relogin or not token.renewable:
            self.login()
            return
        try:
            answer = self.client.call(
                "POST",
                "auth/token/renew-self",
                token=token.value,
                body={"increment": f"{int(token.ttl)}s"},
            )
        except Denied:
            self.login()
            return
        auth = answer.get("auth") or {}
        granted = float(auth.get("lease_duration") or 0)
        self.renewals.inc(kind="token")
        self.token = Token(
            token.value,
            granted,
            time.time(),
            bool(auth.get("renewable")),
            relogin=granted < token.ttl or bool(answer.get("warnings")),
        )

    def revoke(self) -> None:
        if self.token is not None:
            self.client.call("POST", "auth/token/revoke-self", token=self.token.value)
            self.token = None
