"""A minimal Kubernetes API client: get one JSON document, stream a watch.

Enough for one ConfigMap or Secret, with the standard library only (the
official client costs tens of MiB of RSS and seconds of import). The bearer
token file is read on every request, since projected tokens rotate. Every
request has a socket timeout, so a watch that silently stops (a dead TCP
connection, a proxy dropping idle streams) ends and is re-established.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from sidecar.config.settings import KubeAccess
from sidecar.errors import RetryableSourceError, SourceError


class Gone(SourceError):
    """HTTP 410 or a watch ERROR event with code 410: the resourceVersion is too old."""


class NotFound(RetryableSourceError):
    """HTTP 404: a wrong API URL or namespace path, or a resource not served (yet)."""


def watch_socket_timeout(server_timeout: float) -> float:
    """The client's read timeout for a watch: a little longer than the server's
    ``timeoutSeconds``, so a healthy stream always ends on the server's side
    and a silently dead one ends on ours (2 to 10 s later)."""
    return server_timeout + min(10.0, max(2.0, server_timeout / 4))


class KubeClient:
    def __init__(self, access: KubeAccess, timeout: float = 10.0) -> None:
        self.access = access
        self.timeout = timeout
        parts = urlsplit(access.api)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._context: ssl.SSLContext | None = None
        self._ca_stamp: tuple[int, int] | None = None
        if self._https:
            self._ssl_context()

    def _ssl_context(self) -> ssl.SSLContext:
        """The TLS context, rebuilt when the CA file changes (the kubelet
        updates ``ca.crt`` in place when the cluster CA rotates)."""
        ca = self.access.ca_file
        try:
            stat = ca.stat() if ca else None
            stamp = (stat.st_mtime_ns, stat.st_size) if stat else None
            if self._context is None or stamp != self._ca_stamp:
                self._context = ssl.create_default_context(cafile=str(ca) if ca else None)
                self._ca_stamp = stamp
        except (OSError, ssl.SSLError) as exc:
            if self._context is None:
                raise SourceError(
                    f"API server CA {ca}: {getattr(exc, 'strerror', None) or exc}; set "
                    "SIDECAR_KUBE_CA_FILE to a readable PEM bundle"
                ) from exc
            # mid-rotation (a partial file): keep the last good context
        return self._context

    def get(
        self, path: str, params: Mapping[str, str], timeout: float | None = None
    ) -> dict[str, Any]:
        """GET one JSON object; ``timeout`` (socket, per operation) defaults to
        the client's."""
        response, conn = self._request(path, params, timeout or self.timeout)
        try:
            body = response.read()
        except OSError as exc:
            raise RetryableSourceError(f"{self.access.api}{path}: read failed: {exc}") from exc
        finally:
            conn.close()
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise RetryableSourceError(f"{self.access.api}{path}: answer is not JSON") from exc
        if not isinstance(document, dict):
            raise RetryableSourceError(f"{self.access.api}{path}: answer is not a JSON object")
        return document

    def watch(
        self, path: str, params: Mapping[str, str], server_timeout: float
    ) -> Iterator[dict[str, Any]]:
        """Yield watch events until the server ends the stream."""
        query = dict(params, watch="1", timeoutSeconds=str(int(server_timeout)))
        response, conn = self._request(path, query, watch_socket_timeout(server_timeout))
        try:
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise RetryableSourceError(f"watch of {path} dropped: {exc}") from exc
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise RetryableSourceError(f"watch of {path}: bad event line") from exc
                if not isinstance(event, dict):
                    raise RetryableSourceError(f"watch of {path}: event is not a JSON object")
                yield event
        finally:
            conn.close()

    def _request(
        self, path: str, params: Mapping[str, str], timeout: float
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._ssl_context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        headers = {"Accept": "application/json", "User-Agent": "sidecar-config"}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{self._prefix}{path}?{urlencode(params)}"
        try:
            conn.request("GET", url, headers=headers)
            response = conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise RetryableSourceError(
                f"API server {self.access.api}: {exc.verify_message or exc}; "
                f"its certificate must be signed by a CA in {self.access.ca_file} "
                "(SIDECAR_KUBE_CA_FILE)"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RetryableSourceError(f"API server {self.access.api} unreachable: {exc}") from exc
        if response.status == 200:
            return response, conn
        detail = _status_message(response.read())
        conn.close()
        where = f"{self.access.api}{path}"
        if response.status == 410:
            raise Gone(f"{where}: 410 Gone ({detail})")
        if response.status in (401, 403):
            raise SourceError(
                f"{where}: {response.status} ({detail}); the pod's service account needs "
                "get, list and watch on this resource in its namespace (see README, RBAC)"
            )
        if response.status == 404:
            raise NotFound(
                f"{where}: 404 ({detail}); check SIDECAR_KUBE_API and SIDECAR_POD_NAMESPACE"
            )
        raise RetryableSourceError(f"{where}: HTTP {response.status} ({detail})")

    def _token(self) -> str:
        try:
            return self.access.token_file.read_text().strip()
        except OSError:
            return ""


def _status_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", "")) or body[:200].decode(errors="replace")
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")
