"""The bench's parsers and report, on outputs recorded from real runs here
(hey 0.1.4, wrk 4.1.0 against nginx and small servers on 127.0.0.1), and a
smoke run of the quickest measurements (secrets init, config reload)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import agents
from bench.errors import BenchError
from bench.rates import parse_hey_csv, percentile, summarize
from bench.report import Goal, Measure, Report
from bench.tools import parse_hey, parse_wrk, wrk_command

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def test_wrk_summary_percentiles_in_their_units() -> None:
    r = parse_wrk(sample("wrk_c32.txt"), target="direct", concurrency=32)
    assert r.requests == 229627
    assert r.seconds == pytest.approx(3.04)
    assert r.ok == r.requests
    assert r.errors == 0
    assert r.rps == pytest.approx(229627 / 3.04)
    assert r.p50_ms == pytest.approx(0.335)  # "335.00us"
    assert r.p90_ms == pytest.approx(2.10)  # "2.10ms"
    assert r.p99_ms == pytest.approx(20.43)


def test_wrk_non_2xx_answers_are_errors_not_throughput() -> None:
    r = parse_wrk(sample("wrk_non2xx.txt"))
    assert r.requests == 90480
    assert r.ok == 0
    assert r.errors == 90480
    assert r.rps == 0
    assert r.p99_ms == pytest.approx(0.116)


def test_wrk_socket_errors_are_counted() -> None:
    r = parse_wrk(sample("wrk_socket_errors.txt"))
    assert r.requests == 9952
    assert r.ok == 9952
    assert r.errors == 19904
    assert r.error_samples == ["Socket errors: connect 0, read 19904, write 0, timeout 0"]


def test_wrk_takes_whole_seconds_only() -> None:
    command = wrk_command("wrk", "http://127.0.0.1:1/", seconds=0.4, concurrency=32)
    assert "-d1s" in command
    assert "-c32" in command
    assert "-t2" in command


def test_hey_summary() -> None:
    r = parse_hey(sample("hey_c16.txt"), concurrency=16)
    assert r.seconds == pytest.approx(3.0008)
    assert r.requests == r.ok == 98982
    assert r.errors == 0
    assert r.rps == pytest.approx(98982 / 3.0008)
    assert (r.p50_ms, r.p90_ms, r.p99_ms) == pytest.approx((0.3, 0.8, 3.9))


def test_hey_connection_errors_leave_no_throughput_and_no_percentiles() -> None:
    r = parse_hey(sample("hey_refused.txt"))
    assert r.ok == 0
    assert r.rps == 0
    assert r.errors == 24720
    assert r.p50_ms is None
    assert r.p99_ms is None
    assert "connection refused" in r.error_samples[0]


def test_hey_fixed_rate_summary() -> None:
    r = parse_hey(sample("hey_q50.txt"), concurrency=20, rate=1000)
    assert r.ok == 3000
    assert r.rate == 1000
    assert r.p99_ms == pytest.approx(3.4)


def test_hey_without_a_summary_is_a_clear_error() -> None:
    with pytest.raises(BenchError, match="hey printed no summary"):
        parse_hey("Get http://x: dial tcp: connection refused\n")


def test_hey_csv_rows_and_their_summary() -> None:
    rows = parse_hey_csv(sample("hey_csv.txt"))
    assert len(rows) == 203
    assert rows[0] == (0.0006, 200, 0.0131)
    result = summarize(
        [(t, code) for t, code, _ in rows],
        tool="hey",
        target="nginx",
        concurrency=2,
        rate=200,
        seconds=1.0,
    )
    assert result.ok == 200
    assert result.statuses == {"200": 200, "404": 3}
    assert result.errors == 3
    ok_ms = sorted(t * 1000 for t, code, _ in rows if code == 200)
    assert result.p50_ms == ok_ms[99] == pytest.approx(0.3)  # rank ceil(0.5 * 200) = 100
    assert result.p99_ms == ok_ms[197] == pytest.approx(1.7)  # rank ceil(0.99 * 200) = 198


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_goals_compare_ratio_maximum_and_added_latency() -> None:
    ratio = Goal(">= 60%", "ratio_min", 0.6)
    assert ratio.met(650, 1000) is True
    assert ratio.met(550, 1000) is False
    assert Goal("<= 30 MiB", "max", 30).met(31, None) is False
    assert Goal(">= 2,000/s", "min", 2000).met(1500, None) is False
    added = Goal("<= +1 ms", "delta_max", 1.0)
    assert added.met(2.4, 1.5) is True
    assert added.met(2.6, 1.5) is False


def test_a_void_measure_is_not_judged() -> None:
    m = Measure(
        "webhook",
        "k",
        "l",
        350.0,
        "req/s",
        baseline=358.0,
        goal=Goal(">= 60%", "ratio_min", 0.6),
        void="capped by delayed ACKs",
    )
    assert m.met is None
    report = Report()
    report.add(m)
    assert "not judged" in report.text()


def test_report_names_baseline_ratio_goal_and_status(tmp_path: Path) -> None:
    report = Report()
    report.load["webhook"] = 0.5
    report.add(
        Measure("webhook", "webhook.c.rps", "(c) /healthz", 3000.0, "req/s"),
        Measure(
            "webhook",
            "webhook.a.rps",
            "(a) all roles",
            1200.0,
            "reviews/s",
            baseline=3000.0,
            baseline_label="/healthz",
            baseline_unit="req/s",
            goal=Goal(">= 60% of /healthz", "ratio_min", 0.6),
        ),
    )
    text = report.text()
    assert "40%" in text
    assert "MISSED" in text
    assert "/healthz: 3,000 req/s" in text
    json_path, md_path = report.write(tmp_path)
    data = json.loads(json_path.read_text())
    measure = data["measures"][1]
    assert measure["ratio"] == 0.4
    assert measure["goal_met"] is False
    markdown = md_path.read_text()
    assert "| webhook | (a) all roles | 1,200 reviews/s | /healthz: 3,000 req/s | 40% |" in markdown
    assert f"{report.machine['nproc']} cores" in markdown


def test_smoke_secrets_init_and_config_reload(tmp_path: Path) -> None:
    plan = agents.Plan(starts=1, inits=1, changes=1)
    secrets, init_ms, vault_ms = agents.measure_secrets(tmp_path / "secrets", plan)
    assert len(init_ms) == 1
    assert init_ms[0] > vault_ms[0] >= 0
    assert secrets.rss_mib > 0
    assert secrets.ready_s[0] > 0
    config, change_ms, fetch_ms = agents.measure_config(tmp_path / "config", plan)
    assert len(change_ms) == 1
    assert change_ms[0] >= fetch_ms[0] >= 0
    assert config.rss_mib > 0
