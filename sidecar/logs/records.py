"""Records as each sink wants them, encoded in bulk.

A record (stdout, HTTP NDJSON, Elasticsearch) is one JSON object::

    {"@timestamp": "2026-01-02T03:04:05.678901Z", "message": "the line",
     "log": {"file": {"path": "/var/log/app/app.log"}},
     "kubernetes": {"namespace": "shop", "pod": "shop-7f9c-x2x", "container": "app",
                    "node": "node-1", "labels": {"app": "shop"}}}

``@timestamp`` is when the agent read the line. Marks: ``"log": {...,
"partial": true}`` on every part of a split line but the last, and
``"truncated": N`` (bytes dropped) on a truncated one. With ``format: json``
a line that is a JSON object contributes its fields at the top level instead
of ``message`` (a field named like one of ours is renamed ``app_<name>``); any
other line is shipped as text with ``"log": {..., "invalid_json": true}``.

Loki gets one stream per file and batch (labels ``namespace``, ``pod``,
``container``, ``node``, ``filename`` and the chosen pod labels, with
characters other than ``[a-zA-Z0-9_]`` as ``_``), each line as read and a
timestamp per line: the read time, one nanosecond apart, so equal lines are
not taken for duplicates. Marks are appended to a Loki line as text
(`` [partial]``, `` [truncated N bytes]``). Elasticsearch gets each record
after a ``create`` action whose ``_id`` is the file generation and the
record's offset: a batch sent twice is stored once (409 for the second).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from json.encoder import encode_basestring as quote
from typing import Any

from sidecar.logs.framing import PARTIAL, Frames
from sidecar.logs.settings import Identity, SinkSpec

OURS = ("@timestamp", "log", "kubernetes")
_LOKI_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def rfc3339(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1000:06d}Z"


def kubernetes_json(identity: Identity) -> str:
    fields: dict[str, Any] = {
        k: v
        for k, v in (
            ("namespace", identity.namespace),
            ("pod", identity.pod),
            ("container", identity.container),
            ("node", identity.node),
        )
        if v
    }
    if identity.labels:
        fields["labels"] = dict(identity.labels)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class FileMeta:
    """Per-file fragments, built once: what every record of the file shares."""

    path: str
    fid: str
    tail: str  # after the message: ',"log":{...},"kubernetes":{...}}'
    log_open: str  # '"log":{"file":{"path":"..."}' without its closing brace
    stream: str  # Loki: '{"stream":{...},"values":['


class Encoder:
    """NDJSON records (stdout and HTTP sinks): one JSON object per line."""

    content_type = "application/x-ndjson"
    needs_starts = False
    prefix = b""
    separator = b""
    suffix = b""

    def __init__(self, identity: Identity, json_format: bool) -> None:
        self.identity = identity
        self.json_format = json_format
        self.kubernetes = kubernetes_json(identity)

    def meta(self, path: str, fid: str) -> FileMeta:
        log_open = '"log":{"file":{"path":' + quote(path) + "}"
        tail = "," + log_open + '},"kubernetes":' + self.kubernetes + "}\n"
        return FileMeta(path, fid, tail, log_open, self._stream(path))

    def _stream(self, path: str) -> str:
        return ""

    def encode(self, meta: FileMeta, frames: Frames, now_ns: int) -> str:
        head = '{"@timestamp":"' + rfc3339(now_ns) + '","message":'
        if not self.json_format and frames.marks is None:
            return head + (meta.tail + head).join(map(quote, frames.messages)) + meta.tail
        marks = frames.marks or [""] * len(frames.messages)
        return "".join(
            self.record(meta, head, text, mark)
            for text, mark in zip(frames.messages, marks, strict=True)
        )

    def record(self, meta: FileMeta, head: str, text: str, mark: str) -> str:
        extra = _mark_json(mark)
        if self.json_format:
            try:
                fields = json.loads(text)
            except ValueError:
                fields = None
            if isinstance(fields, dict):
                return self._merged(meta, head, fields, extra)
            extra += ',"invalid_json":true'
        if not extra:
            return head + quote(text) + meta.tail
        log = meta.log_open + extra + "}"
        return head + quote(text) + "," + log + ',"kubernetes":' + self.kubernetes + "}\n"

    def _merged(self, meta: FileMeta, head: str, fields: dict[str, Any], extra: str) -> str:
        for key in OURS:
            if key in fields:
                renamed = "app_" + key
                while renamed in fields:
                    renamed = "app_" + renamed
                fields[renamed] = fields.pop(key)
        # ASCII escapes: an app's JSON may hold lone surrogates ("\\ud800"), not UTF-8.
        body = json.dumps(fields, separators=(",", ":"))[1:-1]
        stamp = head[: -len(',"message":')]
        log = meta.log_open + extra + "}"
        merged = stamp + "," + log + ',"kubernetes":' + self.kubernetes
        return merged + ("," + body if body else "") + "}\n"


class ElasticsearchEncoder(Encoder):
    """``_bulk`` bodies: a ``create`` action (``_id`` = generation-offset) per record."""

    needs_starts = True

    def encode(self, meta: FileMeta, frames: Frames, now_ns: int) -> str:
        assert frames.starts is not None
        head = '{"@timestamp":"' + rfc3339(now_ns) + '","message":'
        action = '{"create":{"_id":"' + meta.fid + "-"
        marks = frames.marks or [""] * len(frames.messages)
        if not self.json_format and frames.marks is None:
            return "".join(
                f'{action}{start}"}}}}\n{head}{quote(text)}{meta.tail}'
                for text, start in zip(frames.messages, frames.starts, strict=True)
            )
        return "".join(
            f'{action}{start}"}}}}\n' + self.record(meta, head, text, mark)
            for text, start, mark in zip(frames.messages, frames.starts, marks, strict=True)
        )


class LokiEncoder(Encoder):
    """Push API bodies: ``{"streams": [stream, ...]}``, one stream per piece."""

    content_type = "application/json"
    prefix = b'{"streams":['
    separator = b","
    suffix = b"]}"

    def __init__(self, identity: Identity, json_format: bool) -> None:
        super().__init__(identity, json_format)
        self._last_ns: dict[str, int] = {}

    def _stream(self, path: str) -> str:
        labels: dict[str, str] = {}
        for key, value in self.identity.labels:
            labels[loki_label(key)] = value
        for key, value in (
            ("namespace", self.identity.namespace),
            ("pod", self.identity.pod),
            ("container", self.identity.container),
            ("node", self.identity.node),
            ("filename", path),
        ):
            if value:
                labels[key] = value
        return '{"stream":' + json.dumps(labels, separators=(",", ":")) + ',"values":['

    def encode(self, meta: FileMeta, frames: Frames, now_ns: int) -> str:
        base = max(now_ns, self._last_ns.get(meta.fid, 0) + 1)
        count = len(frames.messages)
        self._last_ns[meta.fid] = base + count - 1
        texts = frames.messages
        if frames.marks is not None:
            texts = [t + _mark_text(m) for t, m in zip(texts, frames.marks, strict=True)]
        values = ",".join(
            f'["{ns}",{quote(text)}]'
            for ns, text in zip(range(base, base + count), texts, strict=True)
        )
        return meta.stream + values + "]}"

    def forget(self, fid: str) -> None:
        self._last_ns.pop(fid, None)


def loki_label(key: str) -> str:
    name = _LOKI_LABEL.sub("_", key)
    return "_" + name if name[:1].isdigit() else name


def _mark_json(mark: str) -> str:
    if not mark:
        return ""
    if mark == PARTIAL:
        return ',"partial":true'
    return ',"truncated":' + mark.partition(":")[2]


def _mark_text(mark: str) -> str:
    if not mark:
        return ""
    if mark == PARTIAL:
        return " [partial]"
    return f" [truncated {mark.partition(':')[2]} bytes]"


def encoder_for(sink: SinkSpec, identity: Identity, json_format: bool) -> Encoder:
    if sink.kind == "loki":
        return LokiEncoder(identity, json_format)
    if sink.kind == "elasticsearch":
        return ElasticsearchEncoder(identity, json_format)
    return Encoder(identity, json_format)
