"""A Loki-compatible stand-in, for tests and e2e only.

It follows Loki's documented HTTP API (grafana.com/docs/loki, "Loki HTTP
API") for the endpoints it serves:

* ``POST /loki/api/v1/push`` with ``Content-Type: application/json`` (the
  documented JSON form; the default Snappy-protobuf form is not served and
  answers 415), optionally ``Content-Encoding: gzip``. The body is
  ``{"streams": [{"stream": {"label": "value"}, "values": [["<unix epoch in
  nanoseconds>", "<log line>"], ...]}]}``; a value may carry a third element,
  an object of string structured metadata. As documented, a timestamp sent
  as a number instead of a string is a 400. A stream needs at least one
  label, label names match ``[a-zA-Z_][a-zA-Z0-9_]*``. Success is ``204 No
  Content``. Invalid entries are refused with a 400 and a plain-text reason
  while the valid entries of the same push are kept, as Loki's distributor
  does. ``max_line_size`` (bytes, 0 for none; Loki's limit is 256KB by
  default) refuses longer lines the same way.
* Like Loki's ingester, an entry with the same nanosecond timestamp and the
  same line as an entry already in its stream is a duplicate and is not
  stored again.
* ``GET /loki/api/v1/query_range?query={label="value",...}&limit=N&direction=
  forward|backward`` (equality matchers only) answers the documented
  ``streams`` result; ``GET /ready`` answers ``ready``.

Faults and controls: see ``standins.logsink`` (fail, stall, store then fail,
store then drop, down). Run: ``python -m standins.loki --listen 127.0.0.1:3100``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standins.logsink import Json, Reply, SinkStandIn, main

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*')


class LokiStandIn(SinkStandIn):
    name = "loki"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_line_size: int = 0) -> None:
        self.max_line_size = max_line_size
        self._seen: dict[str, set[tuple[int, str]]] = {}
        super().__init__(host, port)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self._seen.clear()

    def lines(self) -> list[str]:
        with self.lock:
            return [r["line"] for r in self.records]

    def post(self, target: str, headers: Any, body: bytes) -> tuple[int, Any, str]:
        if urlsplit(target).path != "/loki/api/v1/push":
            raise Reply(404, "404 page not found\n", "text/plain")
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise Reply(
                415,
                f"unsupported Content-Type {content_type!r}: this stand-in takes "
                "application/json only\n",
                "text/plain",
            )
        try:
            document = json.loads(body)
        except ValueError:
            raise Reply(400, "loghttp: the push body is not JSON\n", "text/plain") from None
        streams = document.get("streams") if isinstance(document, dict) else None
        if not isinstance(streams, list):
            raise Reply(400, "loghttp: the push body has no streams list\n", "text/plain")
        errors: list[str] = []
        stored: list[Json] = []
        for stream in streams:
            self._stream(stream, stored, errors)
        self.store(stored)
        if errors:
            raise Reply(400, "\n".join(errors[:10]) + "\n", "text/plain")
        return 204, b"", "text/plain"

    def _stream(self, stream: Any, stored: list[Json], errors: list[str]) -> None:
        labels = stream.get("stream") if isinstance(stream, dict) else None
        values = stream.get("values") if isinstance(stream, dict) else None
        if not isinstance(labels, dict) or not labels or not isinstance(values, list):
            errors.append("error at least one label pair is required per stream")
            return
        if not all(isinstance(v, str) and _LABEL_NAME.match(k) for k, v in labels.items()):
            errors.append(f"error parsing labels {json.dumps(labels)}: invalid label name or value")
            return
        key = json.dumps(labels, sort_keys=True)
        with self.lock:
            seen = self._seen.setdefault(key, set())
            for value in values:
                entry = _entry(value, labels, self.max_line_size, errors)
                if entry is None:
                    continue
                marker = (entry["ts"], entry["line"])
                if marker in seen:
                    continue  # Loki's duplicate: same timestamp, same line, same stream
                seen.add(marker)
                stored.append(entry)

    def get(self, target: str) -> tuple[int, Any, str]:
        parts = urlsplit(target)
        if parts.path == "/ready":
            return 200, "ready\n", "text/plain"
        if parts.path != "/loki/api/v1/query_range":
            raise Reply(404, "404 page not found\n", "text/plain")
        query = parse_qs(parts.query)
        selector = _selector((query.get("query") or [""])[0])
        limit = int((query.get("limit") or ["100"])[0])
        backward = (query.get("direction") or ["backward"])[0] == "backward"
        with self.lock:
            chosen = [r for r in self.records if selector.items() <= r["stream"].items()]
        chosen.sort(key=lambda r: r["ts"], reverse=backward)
        streams: dict[str, Json] = {}
        for record in chosen[:limit]:
            key = json.dumps(record["stream"], sort_keys=True)
            stream = streams.setdefault(key, {"stream": record["stream"], "values": []})
            stream["values"].append([str(record["ts"]), record["line"]])
        result = {"resultType": "streams", "result": list(streams.values()), "stats": {}}
        return 200, {"status": "success", "data": result}, "application/json"


def _entry(value: Any, labels: dict[str, str], limit: int, errors: list[str]) -> Json | None:
    if not isinstance(value, list) or len(value) not in (2, 3):
        errors.append("loghttp: each value must be [timestamp, line] or [timestamp, line, {}]")
        return None
    stamp, line = value[0], value[1]
    if not isinstance(stamp, str) or not stamp.isdigit():
        errors.append(f"loghttp: timestamp {stamp!r} is not a string of nanoseconds")
        return None
    if not isinstance(line, str):
        errors.append("loghttp: the log line is not a string")
        return None
    metadata = value[2] if len(value) == 3 else {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        errors.append("loghttp: structured metadata must be an object of strings")
        return None
    size = len(line.encode())
    if limit and size > limit:
        errors.append(
            f"Max entry size '{limit}' bytes exceeded for stream '{json.dumps(labels)}' while "
            f"adding an entry with length '{size}' bytes"
        )
        return None
    return {"stream": labels, "ts": int(stamp), "line": line, "metadata": metadata}


def _selector(query: str) -> dict[str, str]:
    text = query.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise Reply(400, f"parse error: {query!r} is not a stream selector\n", "text/plain")
    result: dict[str, str] = {}
    for part in filter(str.strip, text[1:-1].split(",")):
        match = _MATCHER.fullmatch(part)
        if not match:
            raise Reply(400, f'parse error: {part!r}: only label="value" matchers\n', "text/plain")
        result[match.group(1)] = json.loads(f'"{match.group(2)}"')
    return result


if __name__ == "__main__":
    main(LokiStandIn)
