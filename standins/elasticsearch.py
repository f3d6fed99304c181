"""An Elasticsearch-compatible stand-in for the bulk API, for tests and e2e only.

It follows Elasticsearch's documented REST API (elastic.co, "Bulk API",
"Response filtering", "Count API") for the endpoints it serves:

* ``POST /_bulk`` and ``POST /<index>/_bulk``: a newline-delimited body
  (``Content-Type: application/x-ndjson`` or ``application/json``, else 406;
  optionally ``Content-Encoding: gzip``) of action lines (``index``,
  ``create``, ``delete``) each followed, but for ``delete``, by a source line.
  The body must end with a newline (else 400). An action's ``_index``, else
  the one in the URL, names the index. The answer is ``200`` with ``took``,
  ``errors`` and one item per action in request order, each with its
  ``status`` and, when it failed, an ``error`` with ``type`` and ``reason``:
  ``create`` of an existing ``_id`` is ``409
  version_conflict_engine_exception``; a source that is not a JSON object is
  ``400 mapper_parsing_exception``. The failure of one item does not affect
  the others. A body over ``max_content_length`` (100mb by default, as
  ``http.max_content_length``) is a 413.
* ``filter_path`` (comma-separated dotted paths, ``*`` matching any key;
  arrays are filtered element by element) trims the answer, e.g.
  ``filter_path=errors,items.*.status,items.*.error``.
* ``GET /<index>/_count`` answers ``{"count": N, "_shards": {...}}``;
  ``GET /`` the cluster's name and version.

Per-item faults, next to the server faults of ``standins.logsink``:
``reject_items(count, status=429)`` answers the next ``count`` items with
``status`` (``es_rejected_execution_exception``, what a full write queue
answers) without storing them; ``refuse_containing(text)`` answers every item
whose source contains ``text`` with ``400 mapper_parsing_exception``, for
good. Over HTTP: ``POST /_standin/reject-items {"count", "status"}``,
``POST /_standin/refuse-containing {"text"}``.
Run: ``python -m standins.elasticsearch --listen 127.0.0.1:9200``.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standins.logsink import Json, Reply, SinkStandIn, main

ACTIONS = ("index", "create", "delete", "update")


def _error(status: int, kind: str, reason: str) -> Json:
    return {
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status,
    }


class ElasticsearchStandIn(SinkStandIn):
    name = "elasticsearch"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, max_content_length: int = 100 * 1024 * 1024
    ) -> None:
        self.max_content_length = max_content_length
        self.docs: dict[str, dict[str, Json]] = {}
        self.rejections: list[tuple[int, int]] = []  # (items left, status)
        self.refusals: list[str] = []
        self._seq = 0
        super().__init__(host, port)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.docs.clear()
            self.rejections.clear()
            self.refusals.clear()

    def reject_items(self, count: int, status: int = 429) -> None:
        with self.lock:
            self.rejections.append((count, status))

    def refuse_containing(self, text: str) -> None:
        with self.lock:
            self.refusals.append(text)

    def sources(self, index: str) -> list[Json]:
        with self.lock:
            return list(self.docs.get(index, {}).values())

    def _control(self, method: str, action: str, body: bytes) -> tuple[int, Any, str]:
        args: Json = json.loads(body or b"{}") if method == "POST" else {}
        if method == "POST" and action == "reject-items":
            self.reject_items(int(args.get("count", 1)), int(args.get("status", 429)))
            return 200, {"ok": True}, "application/json"
        if method == "POST" and action == "refuse-containing":
            self.refuse_containing(str(args.get("text", "")))
            return 200, {"ok": True}, "application/json"
        return super()._control(method, action, body)

    # --- the bulk API --------------------------------------------------------------

    def post(self, target: str, headers: Any, body: bytes) -> tuple[int, Any, str]:
        parts = urlsplit(target)
        segments = [s for s in parts.path.split("/") if s]
        if segments not in (["_bulk"],) and not (len(segments) == 2 and segments[1] == "_bulk"):
            raise Reply(
                405, _error(405, "illegal_argument_exception", f"no handler for {parts.path}")
            )
        if len(body) > self.max_content_length:
            raise Reply(413, b"", "text/plain")
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in ("application/x-ndjson", "application/json"):
            raise Reply(
                406,
                {"error": f"Content-Type header [{content_type}] is not supported", "status": 406},
            )
        if body and not body.endswith(b"\n"):
            raise Reply(
                400,
                _error(
                    400,
                    "illegal_argument_exception",
                    "The bulk request must be terminated by a newline [\\n]",
                ),
            )
        default_index = segments[0] if len(segments) == 2 else None
        started = time.monotonic()
        items = self._bulk(body.split(b"\n")[:-1], default_index)
        answer = {
            "took": int((time.monotonic() - started) * 1000),
            "errors": any("error" in next(iter(i.values())) for i in items),
            "items": items,
        }
        filters = parse_qs(parts.query).get("filter_path")
        if filters:
            answer = filter_path(answer, [p for f in filters for p in f.split(",") if p])
        return 200, answer, "application/json"

    def _bulk(self, lines: list[bytes], default_index: str | None) -> list[Json]:
        items: list[Json] = []
        position = 0
        while position < len(lines):
            number = position + 1
            try:
                action_line = json.loads(lines[position])
                ((action, meta),) = action_line.items()
            except (ValueError, AttributeError):
                raise Reply(
                    400,
                    _error(
                        400,
                        "illegal_argument_exception",
                        f"Malformed action/metadata line [{number}]",
                    ),
                ) from None
            if action not in ACTIONS or not isinstance(meta, dict):
                raise Reply(
                    400,
                    _error(
                        400,
                        "illegal_argument_exception",
                        f"Malformed action/metadata line [{number}], expected one "
                        f"of [create, delete, index, update] but found [{action}]",
                    ),
                )
            position += 1
            source = None
            if action != "delete":
                if position >= len(lines):
                    raise Reply(
                        400,
                        _error(
                            400,
                            "illegal_argument_exception",
                            f"the action on line [{number}] has no source",
                        ),
                    )
                source = lines[position]
                position += 1
            index = meta.get("_index") or default_index
            if not index:
                raise Reply(
                    400,
                    _error(
                        400,
                        "action_request_validation_exception",
                        "Validation Failed: 1: index is missing;",
                    ),
                )
            items.append({action: self._item(action, index, meta.get("_id"), source)})
        return items

    def _item(self, action: str, index: str, doc_id: Any, source: bytes | None) -> Json:
        with self.lock:
            doc_id = str(doc_id) if doc_id is not None else secrets.token_urlsafe(15)
            item: Json = {"_index": index, "_id": doc_id}
            rejected = self._rejection()
            if rejected:
                item["status"] = rejected
                item["error"] = {
                    "type": "es_rejected_execution_exception",
                    "reason": "rejected execution of coordinating operation [write queue full]",
                }
                return item
            if action == "update":
                return item | {
                    "status": 400,
                    "error": {
                        "type": "illegal_argument_exception",
                        "reason": "update is not served",
                    },
                }
            docs = self.docs.setdefault(index, {})
            if action == "delete":
                found = docs.pop(doc_id, None) is not None
                return item | {
                    "result": "deleted" if found else "not_found",
                    "status": 200 if found else 404,
                }
            assert source is not None
            parsed = _source(source)
            text = source.decode("utf-8", "replace")
            if parsed is None or any(r in text for r in self.refusals):
                return item | {
                    "status": 400,
                    "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"},
                }
            if action == "create" and doc_id in docs:
                return item | {
                    "status": 409,
                    "error": {
                        "type": "version_conflict_engine_exception",
                        "reason": f"[{doc_id}]: version conflict, document already exists "
                        "(current version [1])",
                        "index": index,
                        "shard": "0",
                    },
                }
            existed = doc_id in docs
            docs[doc_id] = parsed
            self.records.append({"_index": index, "_id": doc_id, "_source": parsed})
            self._seq += 1
            return item | {
                "_version": 1,
                "result": "updated" if existed else "created",
                "_shards": {"total": 2, "successful": 1, "failed": 0},
                "_seq_no": self._seq,
                "_primary_term": 1,
                "status": 200 if existed else 201,
            }

    def _rejection(self) -> int:
        if not self.rejections:
            return 0
        left, status = self.rejections[0]
        if left <= 1:
            self.rejections.pop(0)
        else:
            self.rejections[0] = (left - 1, status)
        return status

    def get(self, target: str) -> tuple[int, Any, str]:
        parts = urlsplit(target)
        segments = [s for s in parts.path.split("/") if s]
        if not segments:
            return (
                200,
                {
                    "name": "standin",
                    "cluster_name": "standin",
                    "version": {"number": "8.15.0"},
                    "tagline": "You Know, for Search",
                },
                ("application/json"),
            )
        if len(segments) == 2 and segments[1] == "_count":
            with self.lock:
                if segments[0] not in self.docs:
                    raise Reply(
                        404,
                        _error(404, "index_not_found_exception", f"no such index [{segments[0]}]"),
                    )
                count = len(self.docs[segments[0]])
            shards = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
            return 200, {"count": count, "_shards": shards}, "application/json"
        raise Reply(
            404, _error(404, "resource_not_found_exception", f"no handler for {parts.path}")
        )


def _source(line: bytes) -> Json | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def filter_path(value: Any, paths: list[str]) -> Any:
    """Keep only what the dotted ``paths`` name (``*`` any key; lists element-wise)."""
    kept = _filter(value, [p.split(".") for p in paths])
    return {} if kept is _MISSING else kept


def _filter(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        kept = [_filter(v, paths) for v in value]
        return [k for k in kept if k is not _MISSING]
    if not isinstance(value, dict):
        return value
    result: Json = {}
    for key, child in value.items():
        rest = [p[1:] for p in paths if p and p[0] in ("*", key)]
        if not rest:
            continue
        if any(not r for r in rest):
            result[key] = child
            continue
        kept = _filter(child, [r for r in rest if r])
        if kept is not _MISSING and kept != {}:
            result[key] = kept
    return result if result else _MISSING


_MISSING: Any = object()


if __name__ == "__main__":
    main(ElasticsearchStandIn)
