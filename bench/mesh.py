"""Mesh mTLS: what it costs, against the real operator and API server.

A local control plane (``e2e.cluster``, binaries built by ``make e2e-local``)
with the injector installed and run the way e2e runs it (the Deployment's
command line as its ServiceAccount, ``--mesh-port`` on loopback): agents get
real certificates for real projected tokens through TokenReview.

* Throughput: ``wrk`` -> a calling proxy -> a called proxy (permissive) ->
  nginx; once with mesh mTLS (the caller has an upstream identity), once in
  plaintext through the same called proxy and an identical caller without
  it. Goal: mTLS >= 85% of plaintext. CPU per request of both proxies.
* Handshake: new mTLS connections to the called proxy's mesh chain (TLS 1.3,
  client certificate, P-256), one at a time; p99 of connect-to-handshake-done,
  the calmest of three rounds of 300. Goal <= 5 ms.
* Issuance: pods asking for certificates at 50 per second (keys and CSRs made
  beforehand, as each agent does before it sends): CSR sent -> certificate on
  disk (the SDS file written by rename), p50/p99, the calmest of three rounds
  (the same pods renewing); operator and API server CPU per certificate.
  Goal p99 <= 100 ms.
"""

from __future__ import annotations

import concurrent.futures
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import tools
from bench.errors import BenchError
from bench.processes import Service, cpu_seconds, free_ports, rss_mib
from bench.proxy import _check_body, nginx_config
from bench.report import Goal, Measure
from bench.tools import LoadResult
from sidecar.errors import SidecarError

THROUGHPUT_GOAL = Goal(">= 85% of plaintext", "ratio_min", 0.85)
HANDSHAKE_GOAL = Goal("<= 5 ms", "max", 5.0)
ISSUANCE_GOAL = Goal("<= 100 ms", "max", 100.0)
RSS_GOAL = Goal("<= 30 MiB", "max", 30.0)
CONNECTIONS = 32
ISSUE_RATE = 50


def run(workdir: Path, quick: bool, paths: dict[str, str]) -> tuple[list[Measure], dict[str, Any]]:
    from bench.mesh_cluster import MeshCluster  # noqa: PLC0415 (e2e and kube clients)

    workdir.mkdir(parents=True, exist_ok=True)
    with MeshCluster(workdir) as cluster:
        proxies = _Proxies(workdir, cluster, paths)
        try:
            proxies.start()
            closed, cpu = proxies.throughput(
                paths["wrk"], seconds=3 if quick else 5, rounds=1 if quick else 3
            )
            handshakes: list[float] = min(
                (proxies.handshakes(300) for _ in range(1 if quick else 3)),
                key=lambda t: _quantiles(t).get("p99", float("inf")),
            )
            handshake_cpu = proxies.handshake_cpu_us
            agent_rss = rss_mib(proxies.services[1].pid)
        finally:
            proxies.stop()
        issued = cluster.issuance(ISSUE_RATE, seconds=3 if quick else 6, rounds=1 if quick else 3)
    measures = _measures(closed, cpu, handshakes, issued)
    measures.insert(4, _handshake_cpu(handshake_cpu))
    measures.append(
        Measure(
            "mesh",
            "mesh.agent.rss",
            "a meshed proxy's agent: RSS after issuance and traffic",
            round(agent_rss, 1),
            "MiB",
            goal=RSS_GOAL,
            note="the key and CSR are made in a short-lived child; Envoy not counted",
        )
    )
    raw = {
        "closed": {k: [r.to_json() for r in v] for k, v in closed.items()},
        "handshake_ms": _quantiles(handshakes),
        "issue_ms": _quantiles(issued.latencies),
        "issue_errors": issued.errors[:10],
    }
    return measures, raw


def _quantiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {}
    cuts = statistics.quantiles(values, n=100)
    return {"n": len(values), "p50": round(cuts[49], 3), "p99": round(cuts[98], 3)}


class _Proxies:
    """nginx, the called pod's proxy, a calling proxy with mTLS and one without."""

    def __init__(self, workdir: Path, cluster: Any, paths: dict[str, str]) -> None:
        self.workdir = workdir
        self.cluster = cluster
        self.paths = paths
        (self.nginx_port, self.inbound, self.mtls_out, self.plain_out) = free_ports(4)
        self.services: list[Service] = []
        self.handshake_cpu_us = float("inf")  # the calmest round's

    def _proxy(self, name: str, pod: str, account: str, **flags: str) -> Service:
        agent, admin = free_ports(2)
        env = self.cluster.agent_env(self.workdir / name, pod, account)
        argv = [
            sys.executable, "-m", "sidecar", "proxy",
            f"--agent-addr=127.0.0.1:{agent}", f"--admin-port={admin}",
            f"--work-dir={self.workdir / name / 'work'}", "--concurrency=1",
            "--log-level=warning", "--mtls=permissive",
            *(f"--{k.replace('_', '-')}={v}" for k, v in flags.items()),
        ]  # fmt: skip
        service = Service(name, argv, self.workdir / name, env=env)
        service.agent = agent  # type: ignore[attr-defined]
        return service

    def start(self) -> None:
        (self.workdir / "nginx.conf").write_text(nginx_config(self.workdir, self.nginx_port))
        conf = str(self.workdir / "nginx.conf")
        nginx = [self.paths["nginx"], "-c", conf, "-p", f"{self.workdir}/"]
        self.services = [
            Service("nginx", nginx, self.workdir),
            self._proxy(
                "called", "called-0", "called",
                inbound_port=str(self.nginx_port), inbound_listen_port=str(self.inbound),
            ),
            self._proxy(
                "mtls", "caller-0", "caller", outbound_port=str(self.mtls_out),
                upstream=f"http://127.0.0.1:{self.inbound}", upstream_identity="bench/called",
            ),
            self._proxy(
                "plain", "caller-1", "caller", outbound_port=str(self.plain_out),
                upstream=f"http://127.0.0.1:{self.inbound}",
            ),
        ]  # fmt: skip
        for service in self.services:
            service.start()
        for service in self.services[1:]:
            url = f"http://127.0.0.1:{service.agent}/ready"  # type: ignore[attr-defined]
            try:
                service.wait_http(url, timeout=90)
            except BenchError as exc:
                raise BenchError(f"{exc}; its log:\n{service.output_tail()}") from None
        for port in (self.mtls_out, self.plain_out):
            _check_body(f"http://127.0.0.1:{port}/")

    def throughput(
        self, wrk: str, seconds: float, rounds: int
    ) -> tuple[dict[str, list[LoadResult]], dict[str, float]]:
        targets = {"mtls": self.mtls_out, "plaintext": self.plain_out}
        owners = {"mtls": self.services[2].pid, "plaintext": self.services[3].pid}
        called = self.services[1].pid
        closed: dict[str, list[LoadResult]] = {k: [] for k in targets}
        for name, port in targets.items():
            tools.wrk(wrk, f"http://127.0.0.1:{port}/", seconds=1, concurrency=8, target=name)
        for _ in range(rounds):
            for name, port in targets.items():
                before = cpu_seconds(owners[name]) + cpu_seconds(called)
                result = tools.wrk(
                    wrk, f"http://127.0.0.1:{port}/", seconds=seconds, concurrency=CONNECTIONS,
                    target=name,
                )  # fmt: skip
                used = cpu_seconds(owners[name]) + cpu_seconds(called) - before
                closed[name].append(result.with_cpu(used))
        for service in self.services:
            service.check_alive()
        best = {k: max(v, key=lambda r: r.rps) for k, v in closed.items()}
        return closed, {k: r.cpu_us or 0.0 for k, r in best.items()}

    def handshakes(self, count: int) -> list[float]:
        """New mesh connections to the called proxy, with the caller's certificate;
        ``handshake_cpu_us``: the called proxy's CPU per handshake."""
        context = self.cluster.client_context(self.workdir / "mtls")
        timings = []
        before = cpu_seconds(self.services[1].pid)
        for _ in range(count):
            with socket.create_connection(("127.0.0.1", self.inbound), timeout=5) as raw:
                started = time.perf_counter()
                with context.wrap_socket(raw, server_hostname="called.bench.mesh.internal"):
                    timings.append((time.perf_counter() - started) * 1000)
        used = (cpu_seconds(self.services[1].pid) - before) * 1e6 / count
        self.handshake_cpu_us = min(self.handshake_cpu_us, used)
        return timings

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def _measures(
    closed: dict[str, list[LoadResult]],
    cpu: dict[str, float],
    handshakes: list[float],
    issued: Any,
) -> list[Measure]:
    best = {k: max(v, key=lambda r: r.rps) for k, v in closed.items()}
    rounds = len(closed["mtls"])
    hs = _quantiles(handshakes)
    iq = _quantiles(issued.latencies)
    return [
        Measure(
            "mesh", "mesh.plaintext.rps_c32",
            f"two proxies, plaintext: throughput, {CONNECTIONS} conns (best of {rounds})",
            round(best["plaintext"].rps), "req/s",
        ),
        Measure(
            "mesh", "mesh.mtls.rps_c32",
            f"two proxies, mesh mTLS: throughput, {CONNECTIONS} conns (best of {rounds})",
            round(best["mtls"].rps), "req/s", baseline=round(best["plaintext"].rps),
            baseline_label="plaintext", goal=THROUGHPUT_GOAL,
        ),
        Measure(
            "mesh", "mesh.mtls.cpu_us", "both proxies: CPU per request with mTLS",
            round(cpu["mtls"], 1), "us", baseline=round(cpu["plaintext"], 1),
            baseline_label="plaintext",
        ),
        Measure(
            "mesh", "mesh.handshake.p99", f"mTLS handshake to a proxy: p99 of {hs.get('n', 0)}",
            hs.get("p99"), "ms", goal=HANDSHAKE_GOAL, note=f"p50 {hs.get('p50')} ms",
        ),
        Measure(
            "mesh", "mesh.issue.p99",
            f"issuance at {ISSUE_RATE} pods/s: CSR -> certificate on disk, p99",
            iq.get("p99"), "ms", goal=ISSUANCE_GOAL,
            note=f"p50 {iq.get('p50')} ms, {iq.get('n', 0)} pods, {len(issued.errors)} errors; "
            "TokenReview and pod lookup against the real API server",
        ),
        Measure(
            "mesh", "mesh.issue.operator_cpu_ms", "issuance: operator CPU per certificate",
            round(issued.cpu_ms.get("operator", 0), 2), "ms",
            note="endpoint TLS, TokenReview and pod lookup requests, CSR check, signing",
        ),
        Measure(
            "mesh", "mesh.issue.apiserver_cpu_ms", "issuance: API server CPU per certificate",
            round(issued.cpu_ms.get("apiserver", 0), 2), "ms",
            note="TokenReview (with the bound pod) and the pod GET",
        ),
    ]  # fmt: skip


def _handshake_cpu(us: float) -> Measure:
    return Measure(
        "mesh", "mesh.handshake.cpu_us", "mTLS handshake: the called proxy's CPU per handshake",
        round(us), "us", note="Envoy (TLS 1.3, client certificate, P-256) and its agent",
    )  # fmt: skip


class Issued:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.cpu_ms: dict[str, float] = {}
        self.lock = threading.Lock()

    @property
    def p99(self) -> float:
        return _quantiles(self.latencies).get("p99", float("inf"))


def fire(requests: list[Any], rate: float, send: Any) -> Issued:
    """Start ``send(request)`` at ``rate`` per second on a thread pool; collect outcomes."""
    outcome = Issued()
    started = time.perf_counter()

    def one(index: int, request: Any) -> None:
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        try:
            took = send(request)
        except (OSError, ValueError, KeyError, SidecarError, BenchError) as exc:
            with outcome.lock:
                outcome.errors.append(str(exc)[:200])
            return
        with outcome.lock:
            outcome.latencies.append(took)

    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        for index, request in enumerate(requests):
            pool.submit(one, index, request)
    return outcome
