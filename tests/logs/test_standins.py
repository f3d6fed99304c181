"""The log-sink stand-ins answer as the documented APIs say, and fail on demand."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from standins.elasticsearch import ElasticsearchStandIn, filter_path
from standins.logsink import NdjsonStandIn
from standins.loki import LokiStandIn


def post(
    port: int,
    path: str,
    body: bytes,
    content_type: str = "application/json",
    gz: bool = False,
    timeout: float = 5,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": content_type}
    if gz:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get(port: int, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode()
    finally:
        conn.close()


@pytest.fixture
def loki() -> Iterator[LokiStandIn]:
    server = LokiStandIn(max_line_size=100)
    yield server
    server.stop()


@pytest.fixture
def es() -> Iterator[ElasticsearchStandIn]:
    server = ElasticsearchStandIn(max_content_length=64 * 1024)
    yield server
    server.stop()


def push(*values: list[Any], labels: dict[str, str] | None = None) -> bytes:
    stream = {"stream": labels if labels is not None else {"job": "t"}, "values": list(values)}
    return json.dumps({"streams": [stream]}).encode()


# --- Loki ------------------------------------------------------------------------------


def test_loki_push_answers_204_and_query_range_returns_the_streams(loki: LokiStandIn) -> None:
    status, body = post(
        loki.port, "/loki/api/v1/push", push(["1000", "a"], ["2000", "b", {"k": "v"}]), gz=True
    )
    assert (status, body) == (204, b"")
    status, answer = get(loki.port, '/loki/api/v1/query_range?query={job="t"}&direction=forward')
    assert status == 200
    assert answer["status"] == "success"
    assert answer["data"]["resultType"] == "streams"
    assert answer["data"]["result"] == [
        {"stream": {"job": "t"}, "values": [["1000", "a"], ["2000", "b"]]}
    ]
    assert get(loki.port, "/ready") == (200, "ready\n")


def test_loki_refuses_numeric_timestamps_and_keeps_the_valid_entries(loki: LokiStandIn) -> None:
    status, body = post(
        loki.port,
        "/loki/api/v1/push",
        push(["1000", "kept"], [2000, "number"], ["3000", "x" * 101]),
    )
    assert status == 400
    assert b"not a string of nanoseconds" in body
    assert b"Max entry size '100' bytes exceeded" in body
    assert loki.lines() == ["kept"]


def test_loki_drops_an_entry_with_the_same_timestamp_and_line(loki: LokiStandIn) -> None:
    post(loki.port, "/loki/api/v1/push", push(["1000", "same"], ["1000", "same"], ["1001", "same"]))
    assert loki.lines() == ["same", "same"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (push(["1", "a"], labels={}), "application/json", 400),
        (push(["1", "a"], labels={"bad-name": "x"}), "application/json", 400),
        (b"{", "application/json", 400),
        (push(["1", "a"]), "application/x-protobuf", 415),
    ],
)
def test_loki_refuses_what_the_api_refuses(
    loki: LokiStandIn, body: bytes, content_type: str, status: int
) -> None:
    assert post(loki.port, "/loki/api/v1/push", body, content_type)[0] == status
    assert loki.lines() == []


# --- Elasticsearch -------------------------------------------------------------------


def bulk(*pairs: tuple[dict[str, Any], dict[str, Any] | None]) -> bytes:
    lines = []
    for action, source in pairs:
        lines.append(json.dumps(action))
        if source is not None:
            lines.append(json.dumps(source))
    return ("\n".join(lines) + "\n").encode()


def test_es_bulk_answers_per_item_in_order_and_409_for_an_existing_create(
    es: ElasticsearchStandIn,
) -> None:
    body = bulk(
        ({"create": {"_id": "1"}}, {"m": 1}),
        ({"create": {"_id": "1"}}, {"m": 2}),
        ({"index": {"_index": "other"}}, {"m": 3}),
    )
    status, raw = post(es.port, "/logs/_bulk", body, "application/x-ndjson", gz=True)
    answer = json.loads(raw)
    assert status == 200
    assert answer["errors"] is True
    statuses = [next(iter(i.values()))["status"] for i in answer["items"]]
    assert statuses == [201, 409, 201]
    conflict = answer["items"][1]["create"]["error"]
    assert conflict["type"] == "version_conflict_engine_exception"
    assert [s["m"] for s in es.sources("logs")] == [1]
    assert get(es.port, "/logs/_count")[1]["count"] == 1
    assert get(es.port, "/missing/_count")[0] == 404


def test_es_filter_path_keeps_what_is_named(es: ElasticsearchStandIn) -> None:
    es.refuse_containing("poison")
    body = bulk(({"create": {}}, {"m": "ok"}), ({"create": {}}, {"m": "poison"}))
    path = "/logs/_bulk?filter_path=errors,items.*.status,items.*.error"
    answer = json.loads(post(es.port, path, body, "application/x-ndjson")[1])
    assert answer == {
        "errors": True,
        "items": [
            {"create": {"status": 201}},
            {
                "create": {
                    "status": 400,
                    "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"},
                }
            },
        ],
    }
    assert filter_path({"items": [{"a": {"x": 1}}, {"a": {"y": 2}}]}, ["items.*.x"]) == {
        "items": [{"a": {"x": 1}}]
    }


def test_es_rejects_items_on_demand_without_storing_them(es: ElasticsearchStandIn) -> None:
    es.reject_items(2, status=429)
    body = bulk(*(({"create": {"_id": str(n)}}, {"n": n}) for n in range(3)))
    answer = json.loads(post(es.port, "/logs/_bulk", body, "application/x-ndjson")[1])
    assert [next(iter(i.values()))["status"] for i in answer["items"]] == [429, 429, 201]
    assert answer["items"][0]["create"]["error"]["type"] == "es_rejected_execution_exception"
    assert [s["n"] for s in es.sources("logs")] == [2]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status"),
    [
        ("/logs/_bulk", b'{"create":{}}\n{"m":1}', "application/x-ndjson", 400),  # no final newline
        ("/logs/_bulk", b'{"upsert":{}}\n{}\n', "application/x-ndjson", 400),
        ("/_bulk", b'{"create":{}}\n{"m":1}\n', "application/x-ndjson", 400),  # no index
        ("/logs/_bulk", b'{"create":{}}\n{"m":1}\n', "text/plain", 406),
        (
            "/logs/_bulk",
            b'{"create":{}}\n{"m":"' + b"x" * 70000 + b'"}\n',
            "application/x-ndjson",
            413,
        ),
    ],
)
def test_es_refuses_malformed_requests_as_a_whole(
    es: ElasticsearchStandIn, path: str, body: bytes, content_type: str, status: int
) -> None:
    assert post(es.port, path, body, content_type)[0] == status
    assert es.sources("logs") == []


# --- faults ------------------------------------------------------------------------------


def test_faults_fail_stall_store_then_fail_drop_and_down() -> None:
    sink = NdjsonStandIn()
    try:
        body = b'{"n":1}\n{"n":2}\n'
        sink.fail(503, count=1)
        assert post(sink.port, "/in", body)[0] == 503
        assert sink.records == []
        assert post(sink.port, "/in", body)[0] == 200
        sink.store_then_fail(500)
        assert post(sink.port, "/in", body)[0] == 500
        assert len(sink.records) == 4  # stored, yet answered 500
        sink.store_then_drop()
        with pytest.raises(http.client.RemoteDisconnected):
            post(sink.port, "/in", body)
        assert len(sink.records) == 6
        sink.stall(1.0, count=1)
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            post(sink.port, "/in", body, timeout=0.3)
        assert time.monotonic() - started < 1.0
        assert post(sink.port, "/in", b"not json\n")[0] == 400
        sink.down()
        with pytest.raises(ConnectionRefusedError):
            post(sink.port, "/in", body)
        sink.up()
        assert post(sink.port, "/in", body)[0] == 200
        assert 400 in [r.status for r in sink.requests]
    finally:
        sink.stop()


def test_controls_over_http() -> None:
    sink = LokiStandIn()
    try:
        assert post(sink.port, "/_standin/fail", b'{"status": 429, "count": 1}')[0] == 200
        assert post(sink.port, "/loki/api/v1/push", push(["1", "a"]))[0] == 429
        assert post(sink.port, "/loki/api/v1/push", push(["1", "a"]))[0] == 204
        status, records = get(sink.port, "/_standin/records")
        assert status == 200
        assert [r["line"] for r in records] == ["a"]
    finally:
        sink.stop()
