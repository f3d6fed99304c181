"""Rotation, truncation and restarts: every line arrives, re-sends stay bounded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from standins.elasticsearch import ElasticsearchStandIn
from standins.logsink import NdjsonStandIn
from tests.logs.harness import Agent, AppLog, eventually, numbers


def messages(sink: NdjsonStandIn) -> list[str]:
    with sink.lock:
        return [r["message"] for r in sink.records]


def all_arrived(sink: NdjsonStandIn, count: int) -> Callable[[], bool]:
    return lambda: set(numbers(messages(sink))) >= set(range(count))


def test_rename_rotation_reads_the_old_file_to_its_end(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn, logs: Path
) -> None:
    a = agent(sink=ndjson.url)
    app.write(100)
    eventually(all_arrived(ndjson, 100), what="the first 100 lines")
    (logs / "app.log").rename(logs / "app.log.1")
    app.write(50)  # the app still writes to the renamed file: lines 100..149
    app.reopen()
    app.write(50)  # lines 150..199 in the new app.log
    eventually(all_arrived(ndjson, 200), what="all 200 lines")
    assert sorted(numbers(messages(ndjson))) == list(range(200))
    paths = {r["log"]["file"]["path"] for r in ndjson.records}
    assert paths == {str(logs / "app.log")}  # the rotated file keeps its first name
    eventually(
        lambda: a.metric("sidecar_logs_rotations_total", file=str(logs / "app.log")) == 1,
        what="the rotation counted",
    )
    eventually(
        lambda: any(e["msg"] == "done with rotated file" for e in a.events()),
        what="the rotated file closed after --rotate-wait",
    )


def test_copytruncate_continues_from_the_copy_and_restarts_the_file(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn, logs: Path
) -> None:
    a = agent(sink=ndjson.url, args=["--poll-interval=1s"])
    app.write(100)
    eventually(all_arrived(ndjson, 100), what="the first 100 lines")
    name = str(logs / "app.log")
    for round_ in range(3):
        app.write(100)  # not read yet when the copy is taken: the agent polls every second
        app.copytruncate(f".{round_ + 1}")
        app.write(10)
        # each generation is seen (rotations slower than the agent)
        eventually(
            lambda n=round_ + 1: (
                a.metric("sidecar_logs_truncations_total", file=name, copy="found") == n
            ),
            what=f"truncation {round_ + 1}",
        )
        eventually(all_arrived(ndjson, app.count), what=f"{app.count} lines")
    eventually(all_arrived(ndjson, 430), what="all 430 lines")
    counts = Counter(numbers(messages(ndjson)))
    assert set(counts) == set(range(430))
    assert max(counts.values()) == 1


def test_a_restart_resumes_from_the_checkpoint_without_resending_acknowledged_lines(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn
) -> None:
    a = agent(sink=ndjson.url)
    app.write(500)
    eventually(all_arrived(ndjson, 500), what="500 lines")
    a.acknowledged(app.path)
    a.kill()
    app.write(500)
    a.start()
    eventually(all_arrived(ndjson, 1000), what="1000 lines")
    assert sorted(numbers(messages(ndjson))) == list(range(1000))


def test_rotations_and_truncations_while_the_agent_is_down(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn, logs: Path
) -> None:
    a = agent(sink=ndjson.url)
    app.write(100)
    eventually(all_arrived(ndjson, 100), what="100 lines")
    a.acknowledged(app.path)
    a.kill()
    app.write(100)  # 100..199 in the file the agent knew
    app.rotate(".1")  # renamed: the agent finds it by inode
    app.write(100)  # 200..299 in a new app.log
    a.start()
    eventually(all_arrived(ndjson, 300), what="300 lines")
    a.acknowledged(app.path)
    a.kill()
    app.write(100)  # 300..399
    app.copytruncate(".2")  # truncated while down: the rest comes from the copy
    app.write(100)  # 400..499
    a.start()
    eventually(all_arrived(ndjson, 500), what="500 lines")
    assert sorted(numbers(messages(ndjson))) == list(range(500))
    assert any(e["msg"] == "resumed from a copy" for e in a.events())


def test_after_sigkill_only_the_batch_in_flight_is_sent_again(
    agent: Callable[..., Agent], app: AppLog, es: ElasticsearchStandIn, ndjson: NdjsonStandIn
) -> None:
    a = agent(sink=ndjson.url, args=["--batch-bytes=8Ki", "--max-line=4Ki"])
    app.write(1000)
    eventually(all_arrived(ndjson, 1000), what="1000 lines")
    a.acknowledged(app.path)
    ndjson.store_then_fail(500, count=0)  # stored, never acknowledged
    before = len(ndjson.records)
    app.write(1000)
    eventually(lambda: len(ndjson.records) > before, what="the next batch stored, unacknowledged")
    a.kill()
    ndjson.clear()
    seen_before_restart = Counter(numbers(messages(ndjson)))
    restart_index = len(ndjson.requests)
    a.start()
    eventually(all_arrived(ndjson, 2000), what="2000 lines")
    a.acknowledged(app.path)
    after = numbers(messages(ndjson))[sum(seen_before_restart.values()) :]
    resent = [n for n in after if n in seen_before_restart]
    largest = max(r.records for r in ndjson.requests[restart_index:])
    assert resent, "the batch in flight at the kill is sent again"
    assert len(resent) <= largest
    assert all(n >= 1000 for n in resent)  # nothing acknowledged before is sent again
    assert sorted(set(numbers(messages(ndjson)))) == list(range(2000))


def test_rotations_faster_than_the_agent_are_found_by_their_names(
    agent: Callable[..., Agent], app: AppLog, ndjson: NdjsonStandIn, logs: Path
) -> None:
    a = agent(sink=ndjson.url, args=["--poll-interval=1s"])
    app.write(100)
    eventually(all_arrived(ndjson, 100), what="the first 100 lines")
    app.write(50)
    app.rotate(".1")  # seen: the agent holds this file open
    app.write(50)
    app.rotate(".2")  # never seen under its first name: found as a sibling
    app.write(50)
    eventually(all_arrived(ndjson, 250), what="all 250 lines")
    counts = Counter(numbers(messages(ndjson)))
    assert max(counts.values()) == 1
    assert any(
        e["msg"] == "found a rotated file not seen before; reading it from the start"
        for e in a.events()
    )
    a.acknowledged(app.path)
    a.kill()
    for n in range(3, 6):  # three rotations while the agent is down
        app.write(20)
        app.rotate(f".{n}")
    (logs / "app.log.5.gz").write_bytes(b"\x1f\x8b compressed: never read")
    app.write(20)
    a.start()
    eventually(all_arrived(ndjson, 330), what="all 330 lines")
    counts = Counter(numbers(messages(ndjson)))
    assert set(counts) == set(range(330))
    assert max(counts.values()) == 1
    assert all("compressed" not in m for m in messages(ndjson))
