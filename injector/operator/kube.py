"""The operator's own Kubernetes API access: JSON over HTTPS, in a worker thread.

kopf watches SidecarProfiles; everything else the operator reads or writes
(its Secret, its Lease, the MutatingWebhookConfiguration, profile status) is a
handful of plain requests, made here with the standard library so they never
block the event loop the webhook serves from (``asyncio.to_thread``).

Credentials are found the way kopf finds them: in-cluster (service account
token, re-read on every request since projected tokens rotate) or else the
kubeconfig that ``KUBECONFIG`` names, interpreted by the ``kubernetes``
package (client certificates, tokens, exec plugins).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import queue
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from injector.errors import InjectorError

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
IDLE_CONNECTIONS = 8
JSON_PATCH = "application/json-patch+json"


class KubeError(InjectorError):
    """A request to the API server failed."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """409: the object changed since it was read, or already exists."""


@dataclass(frozen=True)
class KubeAccess:
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    insecure: bool = False
    namespace: str | None = None  # in-cluster: this pod's namespace

    @classmethod
    def discover(cls) -> KubeAccess:
        """In-cluster if a service account is mounted, else ``$KUBECONFIG``/~/.kube/config."""
        host, port = (
            os.environ.get("KUBERNETES_SERVICE_HOST"),
            os.environ.get("KUBERNETES_SERVICE_PORT"),
        )
        if host and port and (SA_DIR / "token").exists():
            server_host = f"[{host}]" if ":" in host else host
            return cls(
                server=f"https://{server_host}:{port}",
                ca_file=str(SA_DIR / "ca.crt"),
                token_file=str(SA_DIR / "token"),
                namespace=(SA_DIR / "namespace").read_text().strip()
                if (SA_DIR / "namespace").exists()
                else None,
            )
        return cls.from_kubeconfig()

    @classmethod
    def from_kubeconfig(cls, path: str | None = None) -> KubeAccess:
        import kubernetes.client  # noqa: PLC0415 (only needed outside a cluster)
        import kubernetes.config  # noqa: PLC0415

        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=config
            )
        except (kubernetes.config.ConfigException, OSError, TypeError) as exc:
            raise KubeError(
                0,
                "NoConfig",
                f"no Kubernetes API access: not in a cluster and the kubeconfig "
                f"({path or os.environ.get('KUBECONFIG') or '~/.kube/config'}) is unusable: "
                f"{exc}; set KUBECONFIG or run in a pod with a service account",
            ) from None
        header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
            "authorization"
        )
        token = header.split(" ", 1)[-1] if header else None
        return cls(
            server=str(config.host),
            ca_file=config.ssl_ca_cert,
            cert_file=config.cert_file,
            key_file=config.key_file,
            token=token,
            insecure=not config.verify_ssl,
        )

    def current_token(self) -> str | None:
        """The bearer token (re-read from the file: projected tokens rotate)."""
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return self.token


class Kube:
    """``await kube.request("GET", "/api/v1/...")`` -> the decoded JSON answer."""

    def __init__(self, access: KubeAccess, timeout: float = 10.0) -> None:
        self.access = access
        self.timeout = timeout
        parts = urlsplit(access.server)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._context: ssl.SSLContext | None = None
        self._idle: queue.SimpleQueue[http.client.HTTPConnection] = queue.SimpleQueue()
        if self._https:
            context = ssl.create_default_context(cafile=access.ca_file)
            if access.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if access.cert_file:
                context.load_cert_chain(access.cert_file, access.key_file)
            self._context = context

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle kept-alive connection (True) or a new one (False)."""
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            pass
        if self._https:
            return (
                http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout, context=self._context
                ),
                False,
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout), False

    def _exchange(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """One request on a kept-alive connection (a TLS handshake per request costs
        more than most answers). A reused connection the server closed while idle
        fails before the request is read: then once more on a new one."""
        for _ in range(2):
            conn, reused = self._connection()
            try:
                conn.request(method, url, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if response.will_close or self._idle.qsize() >= IDLE_CONNECTIONS:
                conn.close()
            else:
                self._idle.put(conn)
            return response.status, raw
        raise http.client.RemoteDisconnected("the API server closed the connection")

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": JSON, "User-Agent": "sidecar-injector-operator"}
        if content_type:
            headers["Content-Type"] = content_type
        token = self.access.current_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def request_sync(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = JSON,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = self._headers(content_type if data else None)
        try:
            status, raw = self._exchange(method, url, data, headers)
        except (OSError, http.client.HTTPException) as exc:
            raise KubeError(0, "Unreachable", f"{method} {path}: {exc}") from exc
        try:
            document = json.loads(raw) if raw else {}
        except ValueError:
            document = {"message": raw[:200].decode(errors="replace")}
        if status >= 400:
            message = document.get("message") if isinstance(document, dict) else None
            reason = document.get("reason", "") if isinstance(document, dict) else ""
            text = f"{method} {path}: HTTP {status} {reason}: {message or raw[:200]!r}"
            error = {404: NotFound, 409: Conflict}.get(status, KubeError)
            raise error(status, str(reason), text)
        if not isinstance(document, dict):
            raise KubeError(status, "BadAnswer", f"{method} {path}: the answer is not an object")
        return document

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = JSON,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self.request_sync, method, path, body, content_type, query)

    async def save(self, collection: str, name: str, body: Any, *, exists: bool) -> bool:
        """Create ``body`` in ``collection`` or replace ``collection/name`` (with the
        ``resourceVersion`` it carries); False when another writer won (409)."""
        try:
            if exists:
                await self.request("PUT", f"{collection}/{name}", body)
            else:
                await self.request("POST", collection, body)
        except Conflict:
            return False
        return True

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except NotFound:
            return None
