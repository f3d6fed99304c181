"""Records per sink: what each carries, decoded back."""

from __future__ import annotations

import json

from sidecar.logs.framing import PARTIAL, Frames
from sidecar.logs.records import ElasticsearchEncoder, Encoder, LokiEncoder, loki_label, rfc3339
from sidecar.logs.settings import Identity

WHO = Identity(
    namespace="shop",
    pod="shop-7f9c",
    node="node-1",
    container="app",
    labels=(("app", "shop"), ("app.kubernetes.io/version", "1.2")),
)
NOW = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z


def frames(
    *messages: str, marks: list[str] | None = None, starts: list[int] | None = None
) -> Frames:
    return Frames(list(messages), starts=starts, marks=marks, end=100)


def ndjson(text: str) -> list[dict[str, object]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_record_carries_the_pod_the_file_and_the_line() -> None:
    encoder = Encoder(WHO, json_format=False)
    meta = encoder.meta("/var/log/app/app.log", "f1")
    records = ndjson(encoder.encode(meta, frames("hello", 'quote " and \\ and\ttab'), NOW))
    assert records[0] == {
        "@timestamp": "2026-01-01T00:00:00.123456Z",
        "message": "hello",
        "log": {"file": {"path": "/var/log/app/app.log"}},
        "kubernetes": {
            "namespace": "shop",
            "pod": "shop-7f9c",
            "container": "app",
            "node": "node-1",
            "labels": {"app": "shop", "app.kubernetes.io/version": "1.2"},
        },
    }
    assert records[1]["message"] == 'quote " and \\ and\ttab'
    assert rfc3339(NOW) == "2026-01-01T00:00:00.123456Z"


def test_marks_are_fields_of_the_log_object() -> None:
    encoder = Encoder(Identity(), json_format=False)
    meta = encoder.meta("/l/a.log", "f1")
    text = encoder.encode(meta, frames("a", "b", "c", marks=[PARTIAL, "truncated:7", ""]), NOW)
    logs = [r["log"] for r in ndjson(text)]
    assert logs == [
        {"file": {"path": "/l/a.log"}, "partial": True},
        {"file": {"path": "/l/a.log"}, "truncated": 7},
        {"file": {"path": "/l/a.log"}},
    ]


def test_json_format_merges_an_object_and_keeps_clashing_fields() -> None:
    encoder = Encoder(Identity(namespace="ns"), json_format=True)
    meta = encoder.meta("/l/a.json", "f1")
    lines = (
        '{"level":"info","msg":"ok","n":1}',
        '{"@timestamp":"yesterday","log":"app log","kubernetes":1,"app_log":"taken"}',
        "not json",
        "[1, 2]",
        '{"bad":"\\ud800"}',
    )
    records = ndjson(encoder.encode(meta, frames(*lines), NOW))
    assert records[0]["level"] == "info"
    assert records[0]["msg"] == "ok"
    assert records[0]["n"] == 1
    assert "message" not in records[0]
    assert records[1]["@timestamp"] == "2026-01-01T00:00:00.123456Z"
    assert records[1]["app_@timestamp"] == "yesterday"
    assert records[1]["app_app_log"] == "app log"
    assert records[1]["app_log"] == "taken"
    assert records[1]["app_kubernetes"] == 1
    assert records[1]["kubernetes"] == {"namespace": "ns"}
    for record, line in zip(records[2:4], lines[2:4], strict=True):
        assert record["message"] == line
        assert record["log"]["invalid_json"] is True
    assert records[4]["bad"] == "\ud800"
    encoder.encode(meta, frames(*lines), NOW).encode()  # UTF-8 encodable


def test_elasticsearch_actions_are_creates_with_generation_and_offset_ids() -> None:
    encoder = ElasticsearchEncoder(WHO, json_format=False)
    meta = encoder.meta("/l/a.log", "gen1")
    text = encoder.encode(meta, frames("a", "b", starts=[0, 2]), NOW)
    lines = text.splitlines()
    assert json.loads(lines[0]) == {"create": {"_id": "gen1-0"}}
    assert json.loads(lines[1])["message"] == "a"
    assert json.loads(lines[2]) == {"create": {"_id": "gen1-2"}}
    assert len(lines) == 4
    marked = encoder.encode(meta, frames("x", starts=[9], marks=[PARTIAL]), NOW).splitlines()
    assert json.loads(marked[1])["log"]["partial"] is True


def test_loki_streams_labels_and_distinct_increasing_timestamps() -> None:
    encoder = LokiEncoder(WHO, json_format=False)
    meta = encoder.meta("/l/a.log", "g")
    first = json.loads(encoder.encode(meta, frames("same", "same", marks=["", PARTIAL]), NOW))
    assert first["stream"] == {
        "app": "shop",
        "app_kubernetes_io_version": "1.2",
        "namespace": "shop",
        "pod": "shop-7f9c",
        "container": "app",
        "node": "node-1",
        "filename": "/l/a.log",
    }
    assert first["values"] == [[str(NOW), "same"], [str(NOW + 1), "same [partial]"]]
    # a clock that did not move (or went back): still after the last entry
    second = json.loads(encoder.encode(meta, frames("later"), NOW - 5))
    assert second["values"] == [[str(NOW + 2), "later"]]
    assert loki_label("9lives.io/x-y") == "_9lives_io_x_y"
