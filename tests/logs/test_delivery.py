"""The logs agent as a process, shipping to each kind of sink."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from standins.elasticsearch import ElasticsearchStandIn
from standins.logsink import NdjsonStandIn
from standins.loki import LokiStandIn
from tests.logs.harness import Agent, AppLog, eventually, numbers

IDENTITY = {
    "SIDECAR_POD_NAMESPACE": "shop",
    "SIDECAR_POD_NAME": "shop-7f9c",
    "SIDECAR_NODE_NAME": "node-1",
    "SIDECAR_LOGS_CONTAINER": "app",
    "SIDECAR_LOGS_LABELS": "app,tier",
    "SIDECAR_LOGS_LABEL_0": "shop",
    "SIDECAR_LOGS_LABEL_1": "web",
}


def test_stdout_sink_prints_every_line_with_pod_and_file_and_exits_0_on_sigterm(
    agent: Callable[..., Agent], app: AppLog, logs: Path
) -> None:
    app.write(100)  # before the agent starts: read from the first byte
    a = agent(env=IDENTITY)
    app.write(100)
    app.write(raw=b"the last words, no newline")
    eventually(lambda: len(a.printed()) == 201, what="201 records on stdout")
    records = a.printed()
    assert numbers([r["message"] for r in records]) == list(range(200))
    assert records[-1]["message"] == "the last words, no newline"
    assert records[0]["kubernetes"] == {
        "namespace": "shop",
        "pod": "shop-7f9c",
        "container": "app",
        "node": "node-1",
        "labels": {"app": "shop", "tier": "web"},
    }
    assert records[0]["log"] == {"file": {"path": str(logs / "app.log")}}
    assert a.terminate() == 0
    assert a.events()[-1]["msg"] == "stopped; everything read was shipped"


def test_http_sink_gets_gzipped_ndjson_and_metrics_count_it(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn, logs: Path
) -> None:
    other = AppLog(logs / "audit.log")
    a = agent(sink=f"{ndjson.url}/ingest", args=["--batch-bytes=16Ki", "--max-line=4Ki"])
    app.write(2000, size=200)
    other.write(300)
    eventually(lambda: len(ndjson.records) == 2300, what="2300 records at the sink")
    by_file: dict[str, list[str]] = {}
    for record in ndjson.records:
        by_file.setdefault(record["log"]["file"]["path"], []).append(record["message"])
    assert numbers(by_file[str(logs / "app.log")]) == list(range(2000))
    assert numbers(by_file[str(logs / "audit.log")]) == list(range(300))
    assert len(ndjson.requests) > 10  # batches, not one request

    app_file = str(logs / "app.log")

    def settled() -> bool:
        return (
            a.metric("sidecar_logs_lag_bytes", file=app_file) == 0
            and a.metric("sidecar_logs_shipped_lines_total", file=app_file) == 2000
        )

    eventually(settled, what="lag 0 and 2000 lines shipped")
    size = (logs / "app.log").stat().st_size
    assert a.metric("sidecar_logs_read_bytes_total", file=app_file) == size
    assert a.metric("sidecar_logs_shipped_bytes_total", file=app_file) == size
    assert a.metric("sidecar_logs_read_lines_total", file=app_file) == 2000
    assert a.metric("sidecar_logs_requests_total", outcome="ok") == len(ndjson.requests)
    other.close()


def test_loki_sink_pushes_streams_with_labels(
    agent: Callable[..., Agent], app: AppLog, loki: LokiStandIn, logs: Path
) -> None:
    agent(sink=f"loki+{loki.url}", env=IDENTITY, args=["--loki-tenant=team-a"])
    for _ in range(5):
        app.write(raw=b"identical line\n")  # distinct timestamps: none taken for duplicates
    app.write(500)
    eventually(lambda: len(loki.records) == 505, what="505 entries in Loki")
    assert loki.lines()[:5] == ["identical line"] * 5
    assert numbers(loki.lines()) == list(range(500))
    assert loki.records[0]["stream"] == {
        "app": "shop",
        "tier": "web",
        "namespace": "shop",
        "pod": "shop-7f9c",
        "container": "app",
        "node": "node-1",
        "filename": str(logs / "app.log"),
    }
    assert {r.headers["X-Scope-OrgID"] for r in loki.requests} == {"team-a"}
    assert {r.headers["Content-Encoding"] for r in loki.requests} == {"gzip"}
    stamps = [r["ts"] for r in loki.records]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


def test_elasticsearch_sink_indexes_each_line_once(
    agent: Callable[..., Agent], app: AppLog, es: ElasticsearchStandIn
) -> None:
    agent(sink=f"elasticsearch+{es.url}/app-logs", args=["--batch-bytes=8Ki", "--max-line=4Ki"])
    app.write(1000)
    eventually(lambda: len(es.sources("app-logs")) == 1000, what="1000 documents")
    assert numbers([d["message"] for d in es.sources("app-logs")]) == list(range(1000))
    assert all(r["_id"].endswith(f"-{n * 61}") for n, r in enumerate(es.records))


def test_long_lines_are_split_or_truncated_with_marks(
    agent: Callable[..., Agent], app: AppLog
) -> None:
    split = agent(args=["--max-line=1Ki"])
    app.write(raw=b"A" * 2500 + b"\nshort\n")
    eventually(lambda: len(split.printed()) == 4, what="three parts and a line")
    records = split.printed()
    assert "".join(r["message"] for r in records[:3]) == "A" * 2500
    assert [r["log"].get("partial") for r in records] == [True, True, None, None]
    split.terminate()
    truncate = agent(args=["--max-line=1Ki", "--long-lines=truncate"])
    eventually(lambda: len(truncate.printed()) == 2, what="a truncated line and a line")
    first = truncate.printed()[0]
    assert first["message"] == "A" * 1024
    assert first["log"]["truncated"] == 2500 - 1024
    assert (
        truncate.metric("sidecar_logs_long_lines_total", file=str(app.path), mark="truncated") == 1
    )


def test_multiline_and_json_format(agent: Callable[..., Agent], app: AppLog) -> None:
    a = agent(args=["--multiline=^\\d{4}-", "--format=json"])
    app.write(raw=b'2026-01-01 {"not": "json"}\n  at x()\n{"level":"error","msg":"boom"}\n')
    app.write(raw=b"2026-01-02 next\n")
    eventually(lambda: len(a.printed()) == 2, what="two records")
    first, second = a.printed()
    assert (
        first["message"] == '2026-01-01 {"not": "json"}\n  at x()\n{"level":"error","msg":"boom"}'
    )
    assert first["log"]["invalid_json"] is True
    assert second["message"] == "2026-01-02 next"


def test_quitquitquit_drains_and_exits_0(agent: Callable[..., Agent], app: AppLog) -> None:
    import urllib.request

    a = agent()
    app.write(10)
    request = urllib.request.Request(f"http://127.0.0.1:{a.port}/quitquitquit", method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    assert a.proc is not None
    assert a.proc.wait(30) == 0
    assert numbers([r["message"] for r in a.printed()]) == list(range(10))
