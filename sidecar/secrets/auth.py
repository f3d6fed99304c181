"""Kubernetes auth: log in with the pod's service-account JWT, keep the token.

The JWT file is read on every login (projected tokens rotate). The client
token is renewed with ``renew-self`` at about 2/3 of its TTL; when Vault caps
a renewal (max TTL reached) or the token is not renewable, the agent logs in
afresh at about 85% of what is left. A failed renewal is retried with
jittered back-off, never in a tight loop.

``Denied`` on a call means either that the token went bad or that the
role's policies do not cover the path; ``valid()`` (``lookup-self``) tells
the two apart, so the caller logs in again only for the first, once.

Every token gets a ``ref`` (a short digest, not the token): Vault revokes the
leases a token created when that token ends, so leases are tagged with the
ref of the token that obtained them and fetched anew under a new token.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from sidecar.backoff import Backoff
from sidecar.errors import SidecarError, SourceError
from sidecar.metrics import Registry
from sidecar.secrets.vault import Denied, Json, Rejected, Unavailable, VaultClient, VaultError

RENEW_SHARE = 2 / 3
REPLACE_SHARE = 0.85


@dataclass
class Token:
    value: str
    ttl: float  # seconds granted at issue or last renewal
    issued: float  # wall clock just before the request that issued or last renewed it
    renewable: bool
    relogin: bool = False  # capped or not renewable: replace rather than renew

    @property
    def due(self) -> float:
        """When to act on this token (wall clock)."""
        if self.ttl <= 0:
            return float("inf")
        share = REPLACE_SHARE if self.relogin or not self.renewable else RENEW_SHARE
        return self.issued + self.ttl * share

    @property
    def ref(self) -> str:
        return token_ref(self.value)

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


def token_ref(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


class Auth:
    def __init__(
        self, client: VaultClient, mount: str, role: str, jwt_file: Path, registry: Registry
    ) -> None:
        self.client = client
        self.mount = mount
        self.role = role
        self.jwt_file = jwt_file
        self.token: Token | None = None
        self.retry_at = 0.0  # after a failed renewal or login: not before then
        self.backoff = Backoff(initial=1.0, maximum=60.0)
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
        sent = time.time()  # Vault issues the token after this: its TTL counts from no earlier
        try:
            answer = self.client.call(
                "POST", f"auth/{self.mount}/login", body={"role": self.role, "jwt": jwt}
            )
        except Rejected as exc:
            error: VaultError = Rejected(
                f"role {self.role!r} rejected by auth/{self.mount}: {exc}", exc.status
            )
            error.during_login = True
            raise error from None
        except Denied as exc:
            error = Denied(
                f"login as role {self.role!r} denied at auth/{self.mount}: {exc} "
                f"({self._refusal_hint(str(exc))})",
                exc.status,
            )
            error.during_login = True
            raise error from None
        except VaultError as exc:
            exc.during_login = True
            raise
        auth = answer.get("auth") or {}
        if not auth.get("client_token"):
            raise SourceError(f"auth/{self.mount}/login answered without a client token")
        self.logins.inc()
        self.token = Token(
            str(auth["client_token"]),
            float(auth.get("lease_duration") or 0),
            sent,
            bool(auth.get("renewable")),
        )
        return self.token

    def _refusal_hint(self, reason: str) -> str:
        """What to check, from the reason Vault's kubernetes auth gave (as v1.21 words it)."""
        if "service account name not authorized" in reason:
            return (
                f"role {self.role!r} does not bind this pod's ServiceAccount: add it to the "
                "role's bound_service_account_names or run the pod as one it binds"
            )
        if "namespace not authorized" in reason:
            return (
                f"role {self.role!r} does not bind this pod's namespace: add it to the role's "
                "bound_service_account_namespaces"
            )
        if "audience" in reason:
            return (
                f"the token's audience is not role {self.role!r}'s audience; the injector "
                "projects tokens for audience vault"
            )
        return (
            f"Vault could not check the token: auth/{self.mount} must be a kubernetes auth "
            "mount (secrets-auth-path) whose config reaches this cluster's API server with a "
            "reviewer allowed to create TokenReviews (system:auth-delegator)"
        )

    def current(self) -> str:
        if self.token is None:
            self.login()
        assert self.token is not None
        return self.token.value

    @property
    def ref(self) -> str:
        return self.token.ref if self.token is not None else ""

    @property
    def due(self) -> float:
        """When ``maintain()`` should next run (wall clock); no token: log in now."""
        if self.token is None:
            return self.retry_at
        return max(self.token.due, self.retry_at)

    def valid(self) -> bool:
        """Whether Vault still takes the current token (``lookup-self``)."""
        if self.token is None:
            return False
        try:
            self.client.call("GET", "auth/token/lookup-self", token=self.token.value)
        except Denied:
            return False
        return True

    def adopt(self, token: Token) -> bool:
        """Reuse a handed-off token if Vault still takes it (or cannot say now)."""
        sent = time.time()
        try:
            info = self.client.call("GET", "auth/token/lookup-self", token=token.value)
        except Denied:
            return False
        except Unavailable:
            self.token = token  # checked on first use; a 403 then means log in again
            return True
        data = info.get("data") or {}
        self.token = Token(
            token.value,
            float(data.get("ttl") or 0),
            sent,
            bool(data.get("renewable")),
            token.relogin,
        )
        return True

    def maintain(self) -> None:
        """Renew or replace the token; call when ``due`` has passed."""
        try:
            self._maintain()
        except SidecarError:
            self.retry_at = time.time() + self.backoff.next()
            raise
        self.backoff.reset()
        self.retry_at = 0.0

    def _maintain(self) -> None:
        token = self.token
        if token is None or token.relogin or not token.renewable:
            self.login()
            return
        sent = time.time()
        try:
            answer = self.client.call(
                "POST",
                "auth/token/renew-self",
                token=token.value,
                body={"increment": f"{int(token.ttl)}s"},
            )
        except (Denied, Rejected):
            self.login()  # expired, revoked or no longer renewable
            return
        auth = answer.get("auth") or {}
        granted = float(auth.get("lease_duration") or 0)
        self.renewals.inc(kind="token")
        self.token = Token(
            token.value,
            granted,
            sent,
            bool(auth.get("renewable")),
            relogin=granted < token.ttl or bool(answer.get("warnings")),
        )

    def revoke(self) -> None:
        if self.token is not None:
            self.client.call("POST", "auth/token/revoke-self", token=self.token.value)
            self.token = None
