"""A small Vault HTTP API client on the standard library.

Vault answers every error with ``{"errors": [...]}``; the client maps status
codes to exceptions the agent can act on: 403 ``Denied`` (bad or expired
token: log in again), 404 ``NotFound``, 400 ``Rejected`` (don't retry the
same request), and ``Unavailable`` for what is worth retrying with back-off
(connection refused or reset, timeouts, 429 standby/rate limited, 503
sealed, other 5xx). Messages name the path and never a token or a value;
Vault's error texts (multi-line when it joins several) become one bounded
line, and an answer larger than Vault's own size limit is not read.

While ``deadline`` is set (``--init``), no call waits past it: a Vault that
accepts connections but never answers cannot hold the init container.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from sidecar.backoff import Deadline
from sidecar.errors import RetryableSourceError, SourceError

Json = dict[str, Any]
MAX_ANSWER = 32 << 20  # Vault's default max_request_size: no secret it stores is larger
MAX_REASONS = 500  # characters of Vault's error text kept in a message
# Vault joins several errors into one string (go-multierror):
# "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n".
_MULTI = re.compile(r"^\d+ errors? occurred:\s*$")


class VaultError(SourceError):
    def __init__(self, message: str, status: int = 0, document: Json | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.document = document or {}  # Vault's answer, e.g. a deleted KV v2 version
        self.during_login = False  # set by auth: the same failure awaits every secret


class Denied(VaultError):
    pass


class NotFound(VaultError):
    pass


class Rejected(VaultError):
    pass


class Unavailable(VaultError, RetryableSourceError):
    pass


class VaultClient:
    def __init__(
        self,
        addr: str,
        namespace: str | None = None,
        cacert: Path | None = None,
        timeout: float = 10.0,
        cadata: str | None = None,
    ) -> None:
        self.addr = addr
        self.namespace = namespace
        self.cacert = cacert
        self.cadata = cadata
        self.timeout = timeout
        self.deadline: Deadline | None = None
        parts = urlsplit(addr)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 8200)
        self._prefix = parts.path.rstrip("/")
        self._context: ssl.SSLContext | None = None
        if self._https:
            try:
                self._context = ssl.create_default_context(
                    cafile=str(cacert) if cacert else None, cadata=cadata
                )
            except OSError as exc:  # ssl.SSLError too
                raise VaultError(
                    f"Vault's CA bundle cannot be loaded from {self._sources()}: "
                    f"{exc.strerror or exc}"
                ) from exc

    def _sources(self) -> str:
        sources = [f"{self.cacert} (SIDECAR_VAULT_CACERT)"] if self.cacert else []
        if self.cadata:
            sources.append("SIDECAR_VAULT_CACERT_PEM (the profile's vault.caBundle)")
        return " or ".join(sources)

    def _trusted(self) -> str:
        if self.cacert or self.cadata:
            return f"a CA in {self._sources()}"
        return (
            "a CA the system trusts; give Vault's CA with the profile's vault.caBundle "
            "(SIDECAR_VAULT_CACERT_PEM) or SIDECAR_VAULT_CACERT"
        )

    def call(
        self, method: str, path: str, token: str | None = None, body: Json | None = None
    ) -> Json:
        where = f"{method} {path}"
        status, raw = self._exchange(method, path, token, body, where)
        if status == 204:
            return {}
        if len(raw) > MAX_ANSWER:
            raise Unavailable(
                f"Vault at {self.addr} ({where}): answer larger than {MAX_ANSWER >> 20} MiB, "
                "Vault's own request size limit; not read"
            )
        try:
            document = json.loads(raw) if raw else {}
        except ValueError:
            document = {}
        if not isinstance(document, dict):
            document = {}
        if status < 400:
            return document
        message = f"{where}: {status} {reasons(document) or f'HTTP {status}'}"
        if status == 403:
            raise Denied(message, status, document)
        if status == 404:
            raise NotFound(message, status, document)
        if status in (400, 405):
            raise Rejected(message, status, document)
        raise Unavailable(message, status, document)

    def _connection(self) -> http.client.HTTPConnection:
        timeout = self.timeout
        if self.deadline is not None:
            timeout = max(0.05, min(timeout, self.deadline.remaining()))
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _exchange(
        self, method: str, path: str, token: str | None, body: Json | None, where: str
    ) -> tuple[int, bytes]:
        """One request: (status, at most MAX_ANSWER + 1 bytes of the answer)."""
        headers = {"X-Vault-Request": "true", "Content-Type": "application/json"}
        if token:
            headers["X-Vault-Token"] = token
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        data = json.dumps(body).encode() if body is not None else None
        route, mark, query = path.partition("?")
        target = f"{self._prefix}/v1/{quote(route, safe='/')}{mark}{query}"
        conn = self._connection()
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read(MAX_ANSWER + 1)
            if response.length:  # announced, never sent: read(n) returns what came
                raise http.client.IncompleteRead(raw, response.length)
        except ssl.SSLCertVerificationError as exc:
            raise Unavailable(
                f"Vault at {self.addr} ({where}): {exc.verify_message or exc}; its certificate "
                f"must be signed by {self._trusted()}"
            ) from exc
        except http.client.IncompleteRead as exc:
            raise Unavailable(
                f"Vault at {self.addr} ({where}): answer cut off after {len(exc.partial)} bytes"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(f"Vault at {self.addr} unreachable ({where}): {exc}") from exc
        finally:
            conn.close()
        return response.status, raw


def reasons(document: Json) -> str:
    """Vault's ``errors`` as one line: "permission denied; invalid token".

    Vault may send a multi-line go-multierror text per error; a message that
    ends up as a pod's termination message must stay one readable line, and
    bounded whatever Vault (or something in its place) answers."""
    errors = document.get("errors")
    items = errors if isinstance(errors, list) else [errors] if errors else []
    parts: dict[str, None] = {}  # ordered, without repeats
    size = 0
    for item in items:
        for line in str(item)[:MAX_REASONS].splitlines():
            text = " ".join(line.strip().removeprefix("* ").split())
            if text and not _MULTI.match(text):
                parts[text] = None
                size += len(text) + 2
        if size > MAX_REASONS:
            break
    joined = "; ".join(parts)
    return joined if len(joined) <= MAX_REASONS else joined[: MAX_REASONS - 3] + "..."
