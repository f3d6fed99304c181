"""A small Vault HTTP API client on the standard library.

Vault answers every error with ``{"errors": [...]}``; the client maps status
codes to exceptions the agent can act on: 403 ``Denied`` (bad or expired
token: log in again), 404 ``NotFound``, 400 ``Rejected`` (don't retry the
same request), and ``Unavailable`` for what is worth retrying with back-off
(connection refused or reset, timeouts, 429 standby/rate limited, 503
sealed, other 5xx). Messages name the path and never a token or a value.

While ``deadline`` is set (``--init``), no call waits past it: a Vault that
accepts connections but never answers cannot hold the init container.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from sidecar.backoff import Deadline
from sidecar.errors import RetryableSourceError, SourceError

Json = dict[str, Any]


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
    ) -> None:
        self.addr = addr
        self.namespace = namespace
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
                self._context = ssl.create_default_context(cafile=str(cacert) if cacert else None)
            except OSError as exc:
                raise VaultError(f"Vault CA bundle {cacert}: {exc.strerror or exc}") from exc

    def call(
        self, method: str, path: str, token: str | None = None, body: Json | None = None
    ) -> Json:
        conn: http.client.HTTPConnection
        timeout = self.timeout
        if self.deadline is not None:
            timeout = max(0.05, min(timeout, self.deadline.remaining()))
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        headers = {"X-Vault-Request": "true", "Content-Type": "application/json"}
        if token:
            headers["X-Vault-Token"] = token
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        data = json.dumps(body).encode() if body is not None else None
        where = f"{method} {path}"
        try:
            route, mark, query = path.partition("?")
            target = f"{self._prefix}/v1/{quote(route, safe='/')}{mark}{query}"
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(f"Vault at {self.addr} unreachable ({where}): {exc}") from exc
        finally:
            conn.close()
        status = response.status
        if status == 204:
            return {}
        try:
            document = json.loads(raw) if raw else {}
        except ValueError:
            document = {}
        if not isinstance(document, dict):
            document = {}
        if status < 400:
            return document
        errors = "; ".join(str(e) for e in document.get("errors") or []) or f"HTTP {status}"
        message = f"{where}: {status} {errors}"
        if status == 403:
            raise Denied(message, status, document)
        if status == 404:
            raise NotFound(message, status, document)
        if status in (400, 405):
            raise Rejected(message, status, document)
        raise Unavailable(message, status, document)
