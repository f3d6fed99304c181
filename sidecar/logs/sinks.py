"""Where batches go, and what each sink's answer means.

* ``stdout``: the records as JSON lines on the agent's stdout, where the
  container runtime (and node-level collectors, and ``kubectl logs``) take
  them; a batch is acknowledged once written.
* ``http``: ``POST`` of the NDJSON records; any 2xx acknowledges the batch.
* ``loki``: Loki's push API (``POST /loki/api/v1/push``, JSON body); 204 (or
  any 2xx) acknowledges it. A 400 (e.g. an entry Loki refuses) is final.
* ``elasticsearch``: the ``_bulk`` API with ``create`` actions; the answer
  is judged per item: 2xx stored, 409 already stored (a batch sent again),
  429 and 5xx sent again (those items only), other statuses refused for good.

Every HTTP answer: 2xx success; 408, 429 and 5xx (and connection failures
and timeouts) retryable; 413 too large (the shipper splits the batch); any
other status final, with the sink's own message. Bodies are gzipped
(``Content-Encoding: gzip``) unless ``--gzip false``. One keep-alive
connection, re-established after any error.
"""

from __future__ import annotations

import http.client
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sidecar.logs.errors import RejectedError, RetryableSinkError, TooLargeError
from sidecar.logs.settings import SinkSpec

MAX_ANSWER = 16 * 1024 * 1024
# Response filtering (a documented common option of Elasticsearch's REST API):
# the per-item statuses and errors are all the agent reads.
ES_FILTER = "filter_path=errors,items.*.status,items.*.error"


@dataclass
class Result:
    """What the sink did with the records of one request (indexes into it)."""

    retry: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    duplicates: int = 0
    reason: str = ""


class Transport:
    """POSTs to one URL over a kept-alive connection (TLS when https)."""

    def __init__(
        self, url: str, timeout: float, ca: Path | None = None, auth_file: Path | None = None
    ) -> None:
        parts = urlsplit(url)
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self.auth_file = auth_file
        self._context: Any = None
        if self.https:
            import ssl  # noqa: PLC0415 (only https sinks pay for it)

            self._context = ssl.create_default_context(cafile=str(ca) if ca else None)
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        """(status, answer body, Retry-After) or RetryableSinkError."""
        headers = dict(headers, **self._auth())
        while True:
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request("POST", self.target, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read(MAX_ANSWER)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A kept-alive connection the server closed while idle: one fresh try.
                stale = isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError)
                if reused and stale:
                    continue
                what = str(exc) or type(exc).__name__
                raise RetryableSinkError(f"{self.url} unreachable: {what}") from exc
            if response.will_close:
                self.close()
            return response.status, answer, response.getheader("Retry-After") or ""

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def _auth(self) -> dict[str, str]:
        if self.auth_file is None:
            return {}
        try:
            value = self.auth_file.read_text().strip()
        except OSError as exc:
            raise RetryableSinkError(
                f"--sink-auth-file / SIDECAR_LOGS_SINK_AUTH_FILE {self.auth_file}: cannot read "
                f"({exc.strerror}); it must hold the Authorization header value"
            ) from None
        return {"Authorization": value} if value else {}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def judge(url: str, status: int, answer: bytes, retry_after: str = "") -> None:
    """Raise for anything but 2xx, by class (see the module docstring)."""
    if 200 <= status < 300:
        return
    detail = answer[:300].decode("utf-8", "replace").strip().replace("\n", " ")
    message = f"{url} answered HTTP {status}" + (f": {detail}" if detail else "")
    if status == 413:
        raise TooLargeError(message)
    if status in (408, 429) or status >= 500:
        error = RetryableSinkError(message)
        error.retry_after = _seconds(retry_after)  # type: ignore[attr-defined]
        raise error
    raise RejectedError(message)


def _seconds(value: str) -> float | None:
    try:
        return max(0.0, min(300.0, float(value)))
    except ValueError:
        return None


class Sink:
    """NDJSON over HTTP; the base of the other HTTP sinks."""

    kind = "http"
    content_type = "application/x-ndjson"

    def __init__(self, spec: SinkSpec, transport: Transport | None) -> None:
        self.spec = spec
        self.transport = transport

    def send(self, payload: bytes, compressed: bool, count: int) -> Result:
        assert self.transport is not None
        headers = {"Content-Type": self.content_type, "User-Agent": "sidecar-logs"}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        headers.update(self.extra_headers())
        status, answer, retry_after = self.transport.post(payload, headers)
        judge(self.spec.url, status, answer, retry_after)
        return self.answer(answer, count)

    def extra_headers(self) -> dict[str, str]:
        return {}

    def answer(self, answer: bytes, count: int) -> Result:
        return Result()

    def select(self, raw: bytes, indexes: list[int]) -> bytes:
        """The body with only the records at ``indexes``."""
        lines = raw.split(b"\n")
        return b"".join(lines[i] + b"\n" for i in indexes)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class StdoutSink(Sink):
    kind = "stdout"

    def __init__(self, spec: SinkSpec, fd: int = 1) -> None:
        super().__init__(spec, None)
        self.fd = fd

    def send(self, payload: bytes, compressed: bool, count: int) -> Result:
        view = memoryview(payload)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            raise RetryableSinkError(f"stdout: cannot write ({exc.strerror})") from exc
        return Result()


class LokiSink(Sink):
    kind = "loki"
    content_type = "application/json"
    tenant = ""

    def extra_headers(self) -> dict[str, str]:
        return {"X-Scope-OrgID": self.tenant} if self.tenant else {}

    def select(self, raw: bytes, indexes: list[int]) -> bytes:
        document = json.loads(raw)
        wanted = set(indexes)
        streams: list[dict[str, Any]] = []
        index = 0
        for stream in document["streams"]:
            values = []
            for value in stream["values"]:
                if index in wanted:
                    values.append(value)
                index += 1
            if values:
                streams.append({"stream": stream["stream"], "values": values})
        return json.dumps({"streams": streams}, separators=(",", ":")).encode()


class ElasticsearchSink(Sink):
    kind = "elasticsearch"

    def __init__(self, spec: SinkSpec, transport: Transport | None) -> None:
        super().__init__(spec, transport)

    def select(self, raw: bytes, indexes: list[int]) -> bytes:
        lines = raw.split(b"\n")
        return b"".join(lines[2 * i] + b"\n" + lines[2 * i + 1] + b"\n" for i in indexes)

    def answer(self, answer: bytes, count: int) -> Result:
        try:
            document = json.loads(answer)
        except ValueError as exc:
            raise RetryableSinkError(f"{self.spec.url}: the _bulk answer is not JSON") from exc
        if not isinstance(document, dict):
            raise RetryableSinkError(f"{self.spec.url}: the _bulk answer is not a JSON object")
        if document.get("errors") is False:
            return Result()
        items = document.get("items")
        if not isinstance(items, list) or len(items) != count:
            got = len(items) if isinstance(items, list) else "no"
            raise RetryableSinkError(
                f"{self.spec.url}: the _bulk answer has {got} items for {count} actions"
            )
        result = Result()
        for index, item in enumerate(items):
            outcome: Any = next(iter(item.values()), {}) if isinstance(item, dict) else {}
            status = outcome.get("status", 0) if isinstance(outcome, dict) else 0
            if not isinstance(status, int):
                status = 0
            if 200 <= status < 300:
                continue
            if status == 409:
                result.duplicates += 1
            elif status == 429 or status >= 500 or status == 0:
                result.retry.append(index)
            else:
                result.dropped.append(index)
                if not result.reason:
                    result.reason = _item_error(outcome, status)
        return result


def _item_error(outcome: dict[str, Any], status: int) -> str:
    error = outcome.get("error")
    if isinstance(error, dict):
        return f"{status} {error.get('type', '')}: {str(error.get('reason', ''))[:200]}"
    return f"{status} {str(error)[:200]}"


def make_sink(
    spec: SinkSpec, timeout: float, ca: Path | None, auth: Path | None, tenant: str = ""
) -> Sink:
    if spec.kind == "stdout":
        return StdoutSink(spec)
    url = spec.url
    if spec.kind == "elasticsearch":
        url += ("&" if "?" in url else "?") + ES_FILTER
    transport = Transport(url, timeout, ca, auth)
    if spec.kind == "loki":
        loki = LokiSink(spec, transport)
        loki.tenant = tenant
        return loki
    if spec.kind == "elasticsearch":
        return ElasticsearchSink(spec, transport)
    return Sink(spec, transport)


def raw_payload(payload: bytes, compressed: bool) -> bytes:
    return zlib.decompress(payload, 31) if compressed else payload


def compress(raw: bytes, compressed: bool) -> bytes:
    if not compressed:
        return raw
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    return packer.compress(raw) + packer.flush()
