"""Where configuration comes from: an HTTP URL, or one ConfigMap/Secret.

``HttpSource.fetch()`` does a conditional GET (``If-None-Match`` with the last
ETag, ``If-Modified-Since`` with the last ``Last-Modified``): ``None`` means
unchanged (304). ``ObjectSource`` lists the one object by name, then watches
it from the list's resourceVersion; ``events()`` yields the object's data
each time it may have changed. Whether it really changed is the syncer's
call (it compares content), so a re-list after 410 Gone never causes a
spurious reload.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sidecar.config.kube import Gone, KubeClient
from sidecar.config.settings import KubeSource
from sidecar.errors import RetryableSourceError, SourceError

Files = dict[str, bytes]


# A URL source's body is refused above this size, before it reaches the disk:
# the config volume's sizeLimit is 16Mi, two generations coexist during a swap,
# and exceeding a sizeLimit gets the pod evicted. (ConfigMaps and Secrets are
# capped at 1 MiB by the API server.)
MAX_BODY = 4 * 1024 * 1024


class HttpSource:
    def __init__(self, url: str, file_name: str, timeout: float = 10.0) -> None:
        self.url = url
        self.file_name = file_name
        self.timeout = timeout
        self.etag: str | None = None
        self.last_modified: str | None = None
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._context = ssl.create_default_context() if self._https else None

    def forget(self) -> None:
        """Drop the validators, so the next fetch gets the whole body again
        (after the last one could not be written)."""
        self.etag = None
        self.last_modified = None

    def fetch(self, timeout: float | None = None) -> Files | None:
        """The body as ``{file_name: body}``, or None when unchanged (304).
        ``timeout`` (socket, per operation) defaults to the source's."""
        timeout = timeout or self.timeout
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        headers = {"User-Agent": "sidecar-config"}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        try:
            conn.request("GET", self._path, headers=headers)
            response = conn.getresponse()
            body = response.read(MAX_BODY + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise RetryableSourceError(f"{self.url} unreachable: {exc}") from exc
        finally:
            conn.close()
        if response.status == 304:
            return None
        if response.status != 200:
            raise _status_error(self.url, response.status)
        if len(body) > MAX_BODY:
            raise SourceError(
                f"{self.url}: the body is larger than {MAX_BODY // (1024 * 1024)} MiB; "
                "config files must fit twice into the config volume (sizeLimit 16Mi)"
            )
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) != len(body):
            raise RetryableSourceError(
                f"{self.url}: body cut short ({len(body)} of {length} bytes)"
            )
        self.etag = response.getheader("ETag")
        self.last_modified = response.getheader("Last-Modified")
        return {self.file_name: body}


def _status_error(url: str, status: int) -> SourceError:
    """Server trouble, rate limits and 404 (not published yet) are retried;
    other answers need a fix, named in the message."""
    if 300 <= status < 400:
        return SourceError(
            f"{url} answered HTTP {status} (a redirect); redirects are not followed: "
            "set the source to the final URL"
        )
    if status >= 500 or status in (404, 408, 429):
        return RetryableSourceError(f"{url} answered HTTP {status}")
    return SourceError(f"{url} answered HTTP {status}")


@dataclass(frozen=True)
class ObjectEvent:
    """The object's data now; ``None`` when the object does not exist."""

    files: Files | None
    relisted: bool = False


class ObjectSource:
    def __init__(
        self, client: KubeClient, source: KubeSource, namespace: str, watch_timeout: float
    ) -> None:
        self.client = client
        self.source = source
        self.watch_timeout = watch_timeout
        resource = "configmaps" if source.kind == "configmap" else "secrets"
        self.path = f"/api/v1/namespaces/{namespace}/{resource}"
        self.params = {"fieldSelector": f"metadata.name={source.name}"}
        self.resource_version: str | None = None
        self.lists = 0

    def invalidate(self) -> None:
        """Forget the resourceVersion: the next ``events()`` starts with a list
        (after an event could not be written, so it is not lost)."""
        self.resource_version = None

    def list(self, timeout: float | None = None) -> ObjectEvent:
        document = self.client.get(self.path, self.params, timeout)
        items = document.get("items") or []
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise RetryableSourceError(f"list of {self.source}: 'items' is not a list of objects")
        files = self._files(items[0]) if items else None
        self.lists += 1
        self.resource_version = str(_mapping(document.get("metadata")).get("resourceVersion", ""))
        return ObjectEvent(files, relisted=self.lists > 1)

    def events(self, stop: threading.Event) -> Iterator[ObjectEvent]:
        """List, then watch, forever (until ``stop``); re-list on 410 Gone.
        Errors other than 410 propagate: the caller backs off and calls again."""
        need_list = self.resource_version is None
        while not stop.is_set():
            if need_list:
                yield self.list()
                need_list = False
            try:
                yield from self._watch_once()
            except Gone:
                need_list = True

    def _watch_once(self) -> Iterator[ObjectEvent]:
        params = dict(self.params, allowWatchBookmarks="true")
        if self.resource_version:
            params["resourceVersion"] = self.resource_version
        for event in self.client.watch(self.path, params, self.watch_timeout):
            kind = event.get("type")
            obj = _mapping(event.get("object"))
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(f"watch of {self.source}: {obj.get('message', '410 Gone')}")
                raise RetryableSourceError(f"watch of {self.source}: {obj.get('message', obj)}")
            version = _mapping(obj.get("metadata")).get("resourceVersion")
            if version:
                self.resource_version = str(version)
            if kind in ("ADDED", "MODIFIED"):
                yield ObjectEvent(self._files(obj))
            elif kind == "DELETED":
                yield ObjectEvent(None)

    def _files(self, obj: dict[str, Any]) -> Files:
        files: Files = {}
        if self.source.kind == "secret":
            for key, value in _mapping(obj.get("data")).items():
                try:
                    files[key] = base64.b64decode(value, validate=True)
                except (ValueError, TypeError) as exc:
                    raise SourceError(f"{self.source}: key {key!r} is not base64") from exc
            return files
        for key, value in _mapping(obj.get("data")).items():
            files[key] = str(value).encode()
        for key, value in _mapping(obj.get("binaryData")).items():
            try:
                files[key] = base64.b64decode(value, validate=True)
            except (ValueError, TypeError) as exc:
                raise SourceError(f"{self.source}: binaryData key {key!r} is not base64") from exc
        return files


def _mapping(value: object) -> dict[str, Any]:
    """A JSON object of an API answer, or {} for anything else (absent, null)."""
    return value if isinstance(value, dict) else {}
