"""Sinks that fail, stall, refuse or answer in part; back-pressure; the drain."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from standins.elasticsearch import ElasticsearchStandIn
from standins.logsink import NdjsonStandIn
from standins.loki import LokiStandIn
from tests.logs.harness import Agent, AppLog, eventually, numbers


def received(sink: NdjsonStandIn) -> list[int]:
    with sink.lock:
        return numbers([r["message"] for r in sink.records])


def test_a_failing_sink_is_retried_with_back_off_until_it_recovers(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn
) -> None:
    ndjson.fail(503)
    a = agent(sink=ndjson.url)
    app.write(200)
    eventually(
        lambda: a.metric("sidecar_logs_requests_total", outcome="retryable") >= 2,
        what="two failed tries",
    )
    assert ndjson.records == []
    ndjson.clear()
    eventually(
        lambda: sorted(received(ndjson)) == list(range(200)), what="200 lines after recovery"
    )
    assert a.metric("sidecar_logs_retried_lines_total", file=str(app.path)) >= 200
    failed = [r.at for r in ndjson.requests if r.status == 503]
    gaps = [b - a for a, b in itertools.pairwise(failed)]
    assert all(gap >= 0.3 for gap in gaps), gaps  # backed off, not hammered


def test_a_stalled_sink_times_out_and_the_batch_is_sent_again(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn
) -> None:
    ndjson.stall(3.0, count=1)
    a = agent(sink=ndjson.url, args=["--sink-timeout=500ms"])
    app.write(100)
    eventually(lambda: set(received(ndjson)) >= set(range(100)), what="100 lines")
    assert a.metric("sidecar_logs_requests_total", outcome="retryable") >= 1
    assert any("timed out" in e.get("error", "") for e in a.events())


def test_stored_but_unacknowledged_batches_are_sent_again_never_lost(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn
) -> None:
    ndjson.store_then_fail(500, count=2)
    ndjson.store_then_drop(count=1)
    agent(sink=ndjson.url, args=["--batch-bytes=8Ki", "--max-line=4Ki"])
    app.write(500)
    eventually(lambda: set(received(ndjson)) >= set(range(500)), what="500 lines")
    counts = Counter(received(ndjson))
    assert max(counts.values()) >= 2  # at least once: some twice


def test_elasticsearch_items_rejected_with_429_are_sent_again_alone(
    agent: Callable[..., Agent], app: AppLog, es: ElasticsearchStandIn
) -> None:
    es.reject_items(7, status=429)
    a = agent(sink=f"elasticsearch+{es.url}/logs")
    app.write(50)
    eventually(lambda: len(es.sources("logs")) == 50, what="50 documents")
    bulks = [r for r in es.requests if r.path == "/logs/_bulk"]
    assert [r.records for r in bulks][:2] == [43, 7]  # the second request: the 7 rejected only
    assert sorted(numbers([d["message"] for d in es.sources("logs")])) == list(range(50))
    assert a.metric("sidecar_logs_retried_lines_total", file=str(app.path)) == 7


def test_elasticsearch_refusals_are_dropped_counted_and_named(
    agent: Callable[..., Agent], app: AppLog, es: ElasticsearchStandIn
) -> None:
    es.refuse_containing("poison")
    a = agent(sink=f"elasticsearch+{es.url}/logs")
    app.write(10)
    app.write(raw=b"poison pill\n")
    app.write(10)
    eventually(lambda: len(es.sources("logs")) == 20, what="20 documents")
    eventually(
        lambda: a.metric("sidecar_logs_dropped_lines_total", file=str(app.path)) == 1,
        what="one line dropped",
    )
    errors = [e for e in a.events() if e["msg"] == "sink refused records; dropped"]
    assert "mapper_parsing_exception" in errors[0]["reason"]
    a.acknowledged(app.path)


def test_elasticsearch_resends_after_a_restart_are_stored_once(
    agent: Callable[..., Agent], app: AppLog, es: ElasticsearchStandIn
) -> None:
    es.store_then_fail(500, count=0)
    a = agent(sink=f"elasticsearch+{es.url}/logs")
    app.write(100)
    eventually(lambda: len(es.sources("logs")) == 100, what="100 stored, never acknowledged")
    a.kill()
    es.clear()
    a.start()
    eventually(lambda: a.metric("sidecar_logs_duplicates_total") == 100, what="100 answered 409")
    assert len(es.sources("logs")) == 100


def test_a_loki_refusal_drops_the_batch_and_says_why(
    agent: Callable[..., Agent], app: AppLog, logs: Path
) -> None:
    loki = LokiStandIn(max_line_size=50)
    try:
        a = agent(sink=f"loki+{loki.url}")
        app.write(raw=b"short\n" + b"y" * 80 + b"\n")
        eventually(
            lambda: a.metric("sidecar_logs_dropped_lines_total", file=str(app.path)) == 2,
            what="the push refused",
        )
        assert loki.lines() == ["short"]  # Loki kept the valid entry of the push
        error = next(e for e in a.events() if e["msg"] == "sink refused records; dropped")
        assert "Max entry size '50' bytes exceeded" in error["reason"]
    finally:
        loki.stop()


def test_a_too_large_request_is_split_until_it_fits(
    agent: Callable[..., Agent], app: AppLog
) -> None:
    es = ElasticsearchStandIn(max_content_length=4000)
    try:
        a = agent(sink=f"elasticsearch+{es.url}/logs", args=["--gzip=false"])
        app.write(200)
        eventually(lambda: len(es.sources("logs")) == 200, what="200 documents")
        assert a.metric("sidecar_logs_requests_total", outcome="too_large") >= 1
        assert len([r for r in es.requests if r.status == 200]) >= 5
    finally:
        es.stop()


def test_back_pressure_stops_reading_and_memory_stays_bounded(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn
) -> None:
    ndjson.down()
    a = agent(sink=ndjson.url)
    for _ in range(100):
        app.write(1000, size=200)  # 20 MB
    name = str(app.path)

    def steady() -> bool:
        first = a.metric("sidecar_logs_read_bytes_total", file=name)
        time.sleep(0.5)
        return first > 0 and a.metric("sidecar_logs_read_bytes_total", file=name) == first

    eventually(steady, what="reading to stop while the sink is down")
    read = a.metric("sidecar_logs_read_bytes_total", file=name)
    assert read < 4 * 1024 * 1024, read  # a few batches, not the 20 MB
    assert a.metric("sidecar_logs_lag_bytes", file=name) > 15_000_000
    rss = _rss_mib(a)
    assert rss < 40, rss
    ndjson.up()
    eventually(lambda: len(ndjson.records) >= 100_000, what="all 100,000 lines", timeout=60)
    assert sorted(set(received(ndjson))) == list(range(100_000))


def test_on_sigterm_the_last_partial_line_is_shipped_at_once(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn
) -> None:
    a = agent(sink=ndjson.url, args=["--flush-timeout=60s"])
    app.write(10)
    app.write(raw=b"exit code 3")
    eventually(lambda: len(ndjson.records) == 10, what="10 lines")
    started = time.monotonic()
    assert a.terminate() == 0
    assert time.monotonic() - started < 10
    assert ndjson.records[-1]["message"] == "exit code 3"


def test_the_drain_ends_at_its_deadline_naming_what_was_left(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn
) -> None:
    a = agent(sink=ndjson.url, args=["--drain-timeout=2s"])
    ndjson.fail(503)
    app.write(100)
    eventually(
        lambda: a.metric("sidecar_logs_requests_total", outcome="retryable") >= 1,
        what="a failed try",
    )
    started = time.monotonic()
    assert a.terminate() == 0
    assert time.monotonic() - started < 8
    last = a.events()[-1]
    assert last["msg"] == "stopped with records not shipped"
    assert last["unshipped_bytes"] == {str(app.path): 6100}


def test_the_authorization_file_is_sent_and_reread(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn, tmp_path: Path
) -> None:
    token = tmp_path / "auth"
    token.write_text("Bearer first\n")
    agent(sink=ndjson.url, args=[f"--sink-auth-file={token}"])
    app.write(1)
    eventually(lambda: len(ndjson.records) == 1, what="one line")
    token.write_text("ApiKey second")
    app.write(1)
    eventually(lambda: len(ndjson.records) == 2, what="two lines")
    assert [r.authorization for r in ndjson.requests] == ["Bearer first", "ApiKey second"]


def _rss_mib(a: Agent) -> float:
    assert a.proc is not None
    for line in Path(f"/proc/{a.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")
