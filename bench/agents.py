"""The sidecar agents: memory, start-up, secrets init, config reload latency.

Every agent runs as its own process (``python -m sidecar ROLE``, what the
image's ``sidecar`` entry point runs), on ephemeral loopback ports:

* RSS: ``VmRSS`` of the agent's Python process once it is ready and has
  answered five rounds of ``/ready`` and ``/metrics`` (the proxy merges
  Envoy's stats into its /metrics); Envoy is a separate process and is not
  counted (its RSS is noted).
* start -> ready: from ``Popen`` to the first 200 from the agent's ``/ready``
  (polled every 5 ms), interpreter start-up included; for the proxy this
  includes writing and validating the bootstrap and Envoy's start.
* secrets init: wall time of ``sidecar secrets --init`` for 10 secrets (8 KV
  v2, 1 KV v1, 1 dynamic database credential) against the Vault stand-in
  (``standins/vault.py``) on 127.0.0.1; the Vault-side span (login to last
  read) is noted.
* config reload: a real HTTP config server (ETag, 304) and a real reload
  endpoint, both on 127.0.0.1; the time from changing the served content to
  the reload request arriving, over several changes at random moments of the
  poll cycle (``--interval 1s``, the smallest allowed). The agent's own share
  (from the poll that fetched the new content to the reload) is its own row.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.origins import ConfigOrigin, ReloadEndpoint, serving
from bench.processes import (
    Service,
    child_pids,
    free_ports,
    http_status,
    peak_rss_mib,
    rss_mib,
    wait_until,
)
from bench.report import Goal, Measure

SIDECAR = [sys.executable, "-m", "sidecar"]
RSS_GOAL = Goal("<= 30 MiB", "max", 30.0)
READY_GOAL = Goal("<= 1 s", "max", 1.0)
INIT_GOAL = Goal("<= 300 ms", "max", 300.0)
RELOAD_GOAL = Goal("<= 100 ms", "max", 100.0)
SECRET_COUNT = 10
SCRAPES = 5  # /ready + /metrics rounds before RSS is read


@dataclass(frozen=True)
class Plan:
    starts: int  # start -> ready samples per role (median reported)
    inits: int  # secrets --init samples (median reported)
    changes: int  # config changes (median and max reported)


FULL = Plan(starts=3, inits=5, changes=8)
QUICK = Plan(starts=1, inits=2, changes=3)


@dataclass
class AgentRun:
    ready_s: list[float] = field(default_factory=list)
    rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def run(workdir: Path, quick: bool) -> tuple[list[Measure], dict[str, Any]]:
    plan = QUICK if quick else FULL
    raw: dict[str, Any] = {}
    proxy = measure_proxy(workdir / "proxy", plan)
    secrets, init_ms, vault_ms = measure_secrets(workdir / "secrets", plan)
    config, reload_ms, fetch_ms = measure_config(workdir / "config", plan)
    raw["proxy"] = proxy.__dict__
    raw["secrets"] = {**secrets.__dict__, "init_ms": init_ms, "vault_span_ms": vault_ms}
    raw["config"] = {
        **config.__dict__,
        "change_to_reload_ms": reload_ms,
        "fetch_to_reload_ms": fetch_ms,
    }
    measures: list[Measure] = []
    for role, result in (("proxy", proxy), ("secrets", secrets), ("config", config)):
        note = ""
        if role == "proxy":
            note = f"Envoy itself (not counted): {result.extra.get('envoy_rss_mib', 0):.1f} MiB RSS"
        measures.append(
            Measure(
                "agents",
                f"agents.{role}.rss",
                f"{role} agent RSS (ready, Python only)",
                round(result.rss_mib, 1),
                "MiB",
                goal=RSS_GOAL,
                compare="none",
                note=note,
            )
        )
    for role, result in (("proxy", proxy), ("secrets", secrets), ("config", config)):
        what = " (Envoy included)" if role == "proxy" else ""
        measures.append(
            Measure(
                "agents",
                f"agents.{role}.start_to_ready",
                f"{role} start -> /ready{what}, median of {len(result.ready_s)}",
                round(statistics.median(result.ready_s), 3),
                "s",
                goal=READY_GOAL if role == "proxy" else None,
                compare="none",
            )
        )
    measures.append(
        Measure(
            "agents",
            "agents.secrets.init_10",
            f"secrets --init, {SECRET_COUNT} secrets, median of {len(init_ms)}",
            round(statistics.median(init_ms), 1),
            "ms",
            baseline=round(statistics.median(vault_ms), 1),
            baseline_label="Vault-side span",
            compare="delta",
            goal=INIT_GOAL,
            note="process start to exit 0 (interpreter start included); the baseline is the "
            "span the stand-in saw, first login to last read",
        )
    )
    measures.append(
        Measure(
            "agents",
            "agents.config.change_to_reload",
            f"config change -> reload (URL, --interval 1s), median of {len(reload_ms)}",
            round(statistics.median(reload_ms), 1),
            "ms",
            goal=RELOAD_GOAL,
            compare="none",
            note=f"max {max(reload_ms):.0f} ms; a URL source is polled, so this is about half "
            "the poll interval (1 s is the smallest --interval accepted) plus the agent's share",
        )
    )
    measures.append(
        Measure(
            "agents",
            "agents.config.fetch_to_reload",
            "config: new content fetched -> reload received (agent's share)",
            round(statistics.median(fetch_ms), 1),
            "ms",
            compare="none",
            note=f"max {max(fetch_ms):.1f} ms: write the file set, then POST the reload URL",
        )
    )
    return measures, raw


def scrape(port: int, times: int = SCRAPES) -> None:
    """What a kubelet and Prometheus do to a running agent, before its RSS is read."""
    for _ in range(times):
        for path in ("/ready", "/metrics"):
            if http_status(f"http://127.0.0.1:{port}{path}", timeout=5) != 200:
                raise BenchError(f"GET 127.0.0.1:{port}{path} did not answer 200")


# --- proxy -----------------------------------------------------------------------


def measure_proxy(workdir: Path, plan: Plan) -> AgentRun:
    result = AgentRun()
    for attempt in range(plan.starts):
        directory = workdir / str(attempt)
        directory.mkdir(parents=True, exist_ok=True)
        agent, admin, outbound, upstream = free_ports(4)
        argv = [
            *SIDECAR,
            "proxy",
            f"--agent-addr=127.0.0.1:{agent}",
            f"--admin-port={admin}",
            f"--outbound-port={outbound}",
            f"--work-dir={directory / 'work'}",
            "--concurrency=1",
            f"--upstream=http://127.0.0.1:{upstream}",
            "--log-level=warning",
        ]
        with Service("sidecar-proxy", argv, directory) as proxy:
            result.ready_s.append(proxy.wait_http(f"http://127.0.0.1:{agent}/ready"))
            scrape(agent)
            result.rss_mib = max(result.rss_mib, rss_mib(proxy.pid))
            result.peak_rss_mib = max(result.peak_rss_mib, peak_rss_mib(proxy.pid))
            envoy = child_pids(proxy.pid)
            if envoy:
                result.extra["envoy_rss_mib"] = round(sum(rss_mib(p) for p in envoy), 1)
    return result


# --- secrets ---------------------------------------------------------------------


def measure_secrets(workdir: Path, plan: Plan) -> tuple[AgentRun, list[float], list[float]]:
    from standins.vault import VaultStandIn, make_jwt  # noqa: PLC0415 (test stand-in)

    vault = VaultStandIn()
    try:
        vault.add_role(
            "shop", ["shop"], ["shop"], ["secret/data/shop/", "kv/shop/", "database/creds/"]
        )
        secrets: list[dict[str, str]] = []
        for index in range(SECRET_COUNT - 2):
            vault.put_kv2(f"shop/s{index}", {"user": f"u{index}", "password": "p" * 24})
            secrets.append({"name": f"kv2-{index}", "path": f"secret/data/shop/s{index}"})
        vault.put_kv1("shop/legacy", {"key": "v" * 32})
        secrets.append({"name": "kv1", "path": "kv/shop/legacy"})
        vault.add_database_role("shop", default_ttl=3600, max_ttl=86400)
        secrets.append({"name": "db", "path": "database/creds/shop", "template": "json"})
        workdir.mkdir(parents=True, exist_ok=True)
        token = workdir / "token"
        token.write_text(make_jwt("shop", "shop"))

        def argv(run_dir: Path, *extra: str) -> list[str]:
            return [
                *SIDECAR,
                "secrets",
                f"--vault-addr={vault.addr}",
                "--role=shop",
                f"--token-file={token}",
                f"--secrets={json.dumps(secrets)}",
                f"--secrets-dir={run_dir / 'secrets'}",
                f"--state-dir={run_dir / 'state'}",
                "--log-level=warning",
                *extra,
            ]

        init_ms: list[float] = []
        vault_ms: list[float] = []
        run_dir = workdir
        for attempt in range(plan.inits):
            run_dir = workdir / f"init-{attempt}"
            run_dir.mkdir(parents=True, exist_ok=True)
            mark = len(vault.timeline)
            service = Service(
                "sidecar-secrets-init", argv(run_dir, "--init", "--deadline=20s"), run_dir
            )
            service.start()
            assert service.proc is not None
            try:
                code = service.proc.wait(timeout=30)
            except Exception as exc:
                service.stop()
                raise BenchError("sidecar secrets --init did not finish within 30 s") from exc
            elapsed = time.monotonic() - service.started
            if code != 0:
                raise BenchError(f"sidecar secrets --init exited {code}:\n{service.output_tail()}")
            written = sorted(
                p.name for p in (run_dir / "secrets").iterdir() if not p.name.startswith(".")
            )
            if len(written) != SECRET_COUNT:
                raise BenchError(
                    f"sidecar secrets --init wrote {written}, not {SECRET_COUNT} files"
                )
            init_ms.append(elapsed * 1000)
            with vault.lock:
                stamps = [t for t, _, _ in vault.timeline[mark:]]
            vault_ms.append((max(stamps) - min(stamps)) * 1000 if stamps else 0.0)

        result = AgentRun()
        for attempt in range(plan.starts):
            # The refresher adopts the last init's hand-off (token, leases), as in a pod.
            (agent_port,) = free_ports(1)
            refresher = Service(
                f"sidecar-secrets-{attempt}",
                argv(run_dir, f"--agent-addr=127.0.0.1:{agent_port}"),
                run_dir,
            )
            with refresher:
                result.ready_s.append(refresher.wait_http(f"http://127.0.0.1:{agent_port}/ready"))
                scrape(agent_port)
                result.rss_mib = max(result.rss_mib, rss_mib(refresher.pid))
                result.peak_rss_mib = max(result.peak_rss_mib, peak_rss_mib(refresher.pid))
        return result, init_ms, vault_ms
    finally:
        vault.stop()


# --- config ----------------------------------------------------------------------


def measure_config(workdir: Path, plan: Plan) -> tuple[AgentRun, list[float], list[float]]:
    origin = ConfigOrigin(b"level: info\nversion: 0\n")
    reloads = ReloadEndpoint()
    result = AgentRun()
    change_to_reload: list[float] = []
    fetch_to_reload: list[float] = []
    rng = random.Random(7)
    with serving(origin.handler()) as origin_port, serving(reloads.handler()) as reload_port:
        for attempt in range(plan.starts):
            directory = workdir / str(attempt)
            directory.mkdir(parents=True, exist_ok=True)
            (agent_port,) = free_ports(1)
            argv = [
                *SIDECAR,
                "config",
                f"--source=http://127.0.0.1:{origin_port}/app.yaml",
                f"--dir={directory / 'config'}",
                "--interval=1s",
                f"--reload=http://127.0.0.1:{reload_port}/-/reload",
                f"--agent-addr=127.0.0.1:{agent_port}",
                "--log-level=warning",
            ]
            with Service("sidecar-config", argv, directory) as agent:
                result.ready_s.append(agent.wait_http(f"http://127.0.0.1:{agent_port}/ready"))
                scrape(agent_port)
                result.rss_mib = max(result.rss_mib, rss_mib(agent.pid))
                if attempt < plan.starts - 1:
                    continue
                for _ in range(plan.changes):
                    # A random moment of the 1 s poll cycle.
                    time.sleep(rng.uniform(0.05, 1.0))
                    before = reloads.count()
                    version = origin.set(f"level: debug\nversion: {origin.version + 1}\n".encode())

                    def reloaded(before: int = before) -> bool:
                        return reloads.count() > before

                    wait_until(
                        reloaded,
                        timeout=10,
                        what="the config agent's reload request",
                        interval=0.002,
                    )
                    with reloads.lock:
                        arrived = reloads.times[before]
                    with origin.lock:
                        changed = origin.changed_at[version]
                        served = origin.served_at.get(version, changed)
                    change_to_reload.append((arrived - changed) * 1000)
                    fetch_to_reload.append((arrived - served) * 1000)
                result.rss_mib = max(result.rss_mib, rss_mib(agent.pid))
                result.peak_rss_mib = peak_rss_mib(agent.pid)
    return result, change_to_reload, fetch_to_reload
