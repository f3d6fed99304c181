"""The logs agent: lines shipped per second on one core, memory, start-up.

* Throughput: a file of 200-byte lines (varied text: timestamps, paths,
  numbers) written before the agent starts; ``sidecar logs`` pinned to one
  core (``taskset -c 0``) ships it to an HTTP NDJSON sink on 127.0.0.1 with
  gzip and per-record metadata (namespace, pod, container, node, two
  labels, the file's path and a timestamp). Timed from ``Popen`` to the
  sink holding every record (start-up included); the agent's user+system
  CPU gives lines per CPU-second, the figure a shared machine moves least.
  The sink (in this process, pinned to the other core) gunzips each body and
  counts its records.
* Baseline, same run, same file, same core, same sink: a naive stdlib tail
  loop (``readline`` per line, decoded, batched 1,000 lines a POST, no
  metadata, no gzip), the loop a hand-written shipper starts from.
* Also measured once each: the Elasticsearch ``_bulk`` encoding (ids and
  actions) and ``--format json``.
* RSS: ``VmRSS`` after the run and five rounds of ``/ready`` and
  ``/metrics``; the peak (``VmHWM``) while shipping is noted.
* Start -> ready: ``Popen`` to the first 200 from ``/ready`` (empty logs
  directory), median of several; and the agent's CPU time until then, the
  figure a machine shared with others moves least.
"""

from __future__ import annotations

import gzip
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.agents import scrape
from bench.processes import (
    Service,
    cpu_seconds,
    free_ports,
    peak_rss_mib,
    rss_mib,
    wait_until,
)
from bench.report import Goal, Measure

SIDECAR = [sys.executable, "-m", "sidecar", "logs"]
PIN = ["taskset", "-c", "0"]
LINE_BYTES = 200
RATE_GOAL = Goal(">= 100,000 lines/s on one core", "min", 100_000.0)
RSS_GOAL = Goal("<= 30 MiB", "max", 30.0)
READY_GOAL = Goal("< 300 ms", "max", 300.0)
IDENTITY = {
    "SIDECAR_POD_NAMESPACE": "shop",
    "SIDECAR_POD_NAME": "shop-7f9c8d6b5-x2x9q",
    "SIDECAR_NODE_NAME": "node-1",
    "SIDECAR_LOGS_CONTAINER": "app",
    "SIDECAR_LOGS_LABELS": "app,app.kubernetes.io/version",
    "SIDECAR_LOGS_LABEL_0": "shop",
    "SIDECAR_LOGS_LABEL_1": "1.4.2",
}
NAIVE = """
import http.client, sys, time
path, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)
sent, batch = 0, []
with open(path, "rb") as f:
    while sent < total:
        line = f.readline()
        if not line:
            time.sleep(0.01)
            continue
        batch.append(line.decode("utf-8", "replace").rstrip("\\n"))
        if len(batch) == 1000 or sent + len(batch) == total:
            conn.request("POST", "/ingest", "\\n".join(batch).encode() + b"\\n",
                         {"Content-Type": "text/plain"})
            conn.getresponse().read()
            sent += len(batch)
            batch = []
"""


@dataclass(frozen=True)
class Plan:
    lines: int
    rounds: int
    starts: int


FULL = Plan(lines=500_000, rounds=3, starts=7)
QUICK = Plan(lines=150_000, rounds=1, starts=3)


@dataclass
class Run:
    seconds: float
    cpu: float
    rss: float = 0.0
    peak: float = 0.0

    def rate(self, lines: int) -> float:
        return lines / self.seconds

    def per_cpu(self, lines: int) -> float:
        return lines / self.cpu


class CountingSink:
    """An HTTP sink that counts records (lines of the gunzipped body)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                count = body.count(b"\n")
                if self.path.endswith("/_bulk") or "/_bulk?" in self.path:
                    count //= 2
                    answer = b'{"errors":false}'
                else:
                    answer = b""
                with sink.lock:
                    sink.records += count
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.records = 0

    def count(self) -> int:
        with self.lock:
            return self.records

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_lines(path: Path, count: int) -> None:
    rng = random.Random(16)
    levels = ["INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR"]
    paths = ["/api/v1/orders", "/api/v1/items", "/healthz", "/api/v2/cart/checkout"]
    with path.open("wb") as out:
        chunk = []
        for n in range(count):
            text = (
                f"2026-01-01T00:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z "
                f"{rng.choice(levels)} request handled method=GET path={rng.choice(paths)} "
                f"status={rng.choice((200, 200, 201, 404, 500))} duration_ms={rng.randint(1, 900)} "
                f"user=u{rng.randint(1, 5000)} trace={rng.getrandbits(64):016x} seq={n}"
            )
            chunk.append(text[: LINE_BYTES - 1].ljust(LINE_BYTES - 1, ".") + "\n")
            if len(chunk) == 10_000:
                out.write("".join(chunk).encode())
                chunk = []
        out.write("".join(chunk).encode())


def run(workdir: Path, quick: bool) -> tuple[list[Measure], dict[str, Any]]:
    plan = QUICK if quick else FULL
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir()
    write_lines(logs / "app.log", plan.lines)
    agent_runs: list[Run] = []
    naive_runs: list[Run] = []
    extra: dict[str, Run] = {}
    with pinned_elsewhere(), serving() as sink:
        for round_ in range(plan.rounds):
            naive_runs.append(measure_naive(workdir, logs / "app.log", sink, plan.lines))
            agent_runs.append(measure_agent(workdir / f"agent{round_}", logs, sink, plan.lines))
        extra["elasticsearch"] = measure_agent(
            workdir / "es",
            logs,
            sink,
            plan.lines,
            f"elasticsearch+http://127.0.0.1:{sink.port}/app",
        )
        extra["json"] = measure_agent(
            workdir / "json", logs, sink, plan.lines, args=["--format=json"]
        )
    ready_ms, ready_cpu_ms = measure_start(workdir / "starts", plan.starts)
    return measures(plan, agent_runs, naive_runs, extra, (ready_ms, ready_cpu_ms)), {
        "lines": plan.lines,
        "agent": [r.__dict__ for r in agent_runs],
        "naive": [r.__dict__ for r in naive_runs],
        "extra": {k: v.__dict__ for k, v in extra.items()},
        "start_to_ready_ms": ready_ms,
        "start_to_ready_cpu_ms": ready_cpu_ms,
    }


@contextmanager
def pinned_elsewhere() -> Iterator[None]:
    """This process (the sink) on the other core while the agent has core 0."""
    before = os.sched_getaffinity(0)
    if len(before) > 1 and 0 in before:
        os.sched_setaffinity(0, before - {0})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def serving() -> Iterator[CountingSink]:
    sink = CountingSink()
    try:
        yield sink
    finally:
        sink.close()


def measure_agent(
    directory: Path,
    logs: Path,
    sink: CountingSink,
    lines: int,
    url: str = "",
    args: list[str] | None = None,
) -> Run:
    directory.mkdir(parents=True, exist_ok=True)
    (agent_port,) = free_ports(1)
    argv = [
        *PIN,
        *SIDECAR,
        f"--path={logs}",
        f"--state-dir={directory / 'state'}",
        f"--sink={url or f'http://127.0.0.1:{sink.port}/ingest'}",
        f"--agent-addr=127.0.0.1:{agent_port}",
        "--log-level=warning",
        *(args or []),
    ]
    sink.reset()
    env = {**os.environ, **IDENTITY}
    with Service("sidecar-logs", argv, directory, env=env) as agent:
        _until_shipped(agent, sink, lines)
        seconds = time.monotonic() - agent.started
        cpu = cpu_seconds(agent.pid)
        result = Run(seconds, cpu, peak=peak_rss_mib(agent.pid))
        scrape(agent_port)
        result.rss = rss_mib(agent.pid)
    return result


def measure_naive(directory: Path, path: Path, sink: CountingSink, lines: int) -> Run:
    sink.reset()
    argv = [*PIN, sys.executable, "-c", NAIVE, str(path), str(sink.port), str(lines)]
    with Service("naive-tail", argv, directory) as naive:
        _until_shipped(naive, sink, lines)
        seconds = time.monotonic() - naive.started
        return Run(seconds, cpu_seconds(naive.pid))


def _until_shipped(service: Service, sink: CountingSink, lines: int) -> None:
    def done() -> bool:
        service.check_alive()
        return sink.count() >= lines

    wait_until(done, timeout=300, what=f"{service.name}: {lines} lines at the sink", interval=0.005)


def measure_start(directory: Path, samples: int) -> tuple[list[float], list[float]]:
    """(wall ms, CPU ms) from ``Popen`` to the first 200 from /ready."""
    (directory / "logs").mkdir(parents=True)
    results: list[float] = []
    cpu: list[float] = []
    for n in range(samples):
        (port,) = free_ports(1)
        argv = [
            *SIDECAR,
            f"--path={directory / 'logs'}",
            f"--state-dir={directory / f'state{n}'}",
            f"--agent-addr=127.0.0.1:{port}",
            "--log-level=warning",
        ]
        with Service(f"sidecar-logs-start{n}", argv, directory) as agent:
            results.append(agent.wait_http(f"http://127.0.0.1:{port}/ready") * 1000)
            cpu.append(cpu_seconds(agent.pid) * 1000)
    return results, cpu


def measures(
    plan: Plan,
    agent: list[Run],
    naive: list[Run],
    extra: dict[str, Run],
    ready: tuple[list[float], list[float]],
) -> list[Measure]:
    return throughput(plan, agent, naive, extra) + footprint(agent, ready)


def throughput(
    plan: Plan, agent: list[Run], naive: list[Run], extra: dict[str, Run]
) -> list[Measure]:
    n = plan.lines
    best, base = max(agent, key=lambda r: r.rate(n)), max(naive, key=lambda r: r.rate(n))
    leanest = max(agent, key=lambda r: r.per_cpu(n))
    base_cpu = max(naive, key=lambda r: r.per_cpu(n))
    label = f"{n:,} lines of {LINE_BYTES} B"
    rounds = f"best of {len(agent)}"
    return [
        Measure(
            "logs",
            "logs.http.rate",
            f"HTTP + gzip + metadata, {label}, one core ({rounds})",
            round(best.rate(n)),
            "lines/s",
            baseline=round(base.rate(n)),
            baseline_label="naive tail loop",
            goal=RATE_GOAL,
            note="wall clock from process start, agent pinned with taskset -c 0; the "
            "baseline ships raw lines without metadata or gzip",
        ),
        Measure(
            "logs",
            "logs.http.per_cpu",
            f"HTTP + gzip + metadata: lines per CPU-second ({rounds})",
            round(leanest.per_cpu(n)),
            "lines/s",
            baseline=round(base_cpu.per_cpu(n)),
            baseline_label="naive tail loop",
            goal=RATE_GOAL,
            note="user+system CPU of the process, start-up included: the steady figure",
        ),
        Measure(
            "logs",
            "logs.es.per_cpu",
            "Elasticsearch _bulk (ids, actions): lines per CPU-second",
            round(extra["elasticsearch"].per_cpu(n)),
            "lines/s",
            compare="none",
        ),
        Measure(
            "logs",
            "logs.json.per_cpu",
            "--format json (parsed, merged): lines per CPU-second",
            round(extra["json"].per_cpu(n)),
            "lines/s",
            compare="none",
        ),
    ]


def footprint(agent: list[Run], ready: tuple[list[float], list[float]]) -> list[Measure]:
    ready_ms, ready_cpu_ms = ready
    return [
        Measure(
            "logs",
            "logs.rss",
            "logs agent RSS after shipping (Python)",
            round(max(r.rss for r in agent), 1),
            "MiB",
            goal=RSS_GOAL,
            compare="none",
            note=f"peak while shipping (VmHWM): {max(r.peak for r in agent):.1f} MiB",
        ),
        Measure(
            "logs",
            "logs.start_to_ready",
            f"logs start -> /ready, median of {len(ready_ms)}",
            round(statistics.median(ready_ms), 1),
            "ms",
            goal=READY_GOAL,
            compare="none",
            note=f"max {max(ready_ms):.0f} ms; interpreter start-up included; on a loaded "
            "machine most of it is waiting for a core (see the CPU row)",
        ),
        Measure(
            "logs",
            "logs.start_cpu",
            f"logs start -> /ready: CPU, median of {len(ready_cpu_ms)}",
            round(statistics.median(ready_cpu_ms), 1),
            "ms",
            goal=READY_GOAL,
            compare="none",
            note="user+system CPU of the agent until /ready answers: what start-up costs when "
            "a core is free",
        ),
    ]
