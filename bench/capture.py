"""Transparent capture: captured outbound against the explicit listener, and the
time ``sidecar capture`` takes to install its rules. Needs root (network
namespaces).

* A pod namespace and a peer namespace joined by a veth pair; nginx in the
  peer (``10.252.0.1:8080``, the proxy section's config and body).
* One ``sidecar proxy`` in the pod, as UID 1337, ``--concurrency 1``, with
  both ``--capture iptables`` and ``--upstream http://10.252.0.1:8080``, after
  ``sidecar capture`` installed the rules: the same Envoy serves both paths.
* wrk in the pod (32 connections, 2 threads): ``explicit`` calls
  ``127.0.0.1:15001`` (loopback, not captured); ``captured`` calls nginx by
  its address and the rules send it to the proxy; ``direct`` runs as UID 1337
  (never captured) for scale. Rounds alternate; the best round of each is
  kept, with the proxy's CPU (agent + Envoy) per request.
* The goal's figure: both paths at the same moment through the same Envoy
  worker (two wrk, 16 connections each): what each gets of the worker says
  what each request costs, whatever else the shared machine does meanwhile
  (run one after the other, the ratio swings by 15% with the machine's load).
  The median round of ``together_rounds`` is kept.
* Rules: ``sidecar capture`` run in fresh namespaces, timed from its own log
  (``ms``: the iptables work for both families, the goal), from outside
  (process start to exit, Python start-up included; ``python -c pass`` in the
  same run gives the interpreter's share) and in CPU time (nsenter, Python and
  iptables: the figure a busy machine moves least).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import proxy, tools
from bench.errors import BenchError
from bench.processes import cpu_seconds, wait_until
from bench.report import Goal, Measure
from bench.tools import LoadResult

PEER = "10.252.0.1"
POD = "10.252.0.2"
NGINX = f"{PEER}:8080"
CONNECTIONS = 32
THROUGHPUT_GOAL = Goal(">= 90% of explicit", "ratio_min", 0.90)
RULES_GOAL = Goal("< 200 ms", "max", 200.0)
RULE_SAMPLES = 7
PROXY_UID = 1337


@dataclass(frozen=True)
class Plan:
    seconds: float
    rounds: int


FULL = Plan(seconds=5, rounds=3)
QUICK = Plan(seconds=3, rounds=1)
TOGETHER_ROUNDS = 5


class Namespace:
    """An anonymous network namespace held by ``sleep`` (gone when stopped)."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sleep", "infinity"], start_new_session=True
        )
        ours = os.readlink("/proc/self/ns/net")
        wait_until(lambda: _netns(self.holder.pid) not in (None, ours), 10, "a namespace")
        self.procs: list[subprocess.Popen[bytes]] = []

    def command(self, argv: list[str], user: int | None = None) -> list[str]:
        prefix = ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--"]
        if user is not None:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]
        return prefix + argv

    def run(self, argv: list[str], user: int | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(argv, user), capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise BenchError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
        return result

    def start(self, argv: list[str], log: Path, user: int | None = None) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self.command(argv, user), stdout=out, stderr=out, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in [*self.procs, self.holder]:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def _netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def check_available() -> None:
    if os.geteuid() != 0:
        raise BenchError("needs root (network namespaces and iptables)")
    for tool in ("unshare", "nsenter", "setpriv", "ip", "iptables-restore", "ip6tables-restore"):
        if shutil.which(tool) is None:
            raise BenchError(f"needs {tool} (util-linux, iproute2, iptables)")


def run(workdir: Path, quick: bool, paths: dict[str, str]) -> tuple[list[Measure], dict[str, Any]]:
    check_available()
    plan = QUICK if quick else FULL
    workdir.mkdir(parents=True, exist_ok=True)
    rules = measure_rules()
    pod, peer = Namespace(), Namespace()
    # The proxy (UID 1337) writes its bootstrap here; the bench's own temp dir is 0700.
    work = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    try:
        _wire(pod, peer)
        (workdir / "nginx.conf").write_text(
            proxy.nginx_config(workdir, 8080).replace("listen 127.0.0.1:", f"listen {PEER}:")
        )
        peer.start([paths["nginx"], "-c", str(workdir / "nginx.conf"), "-p", f"{workdir}/"],
                   workdir / "nginx.log")  # fmt: skip
        pod.run([sys.executable, "-m", "sidecar", "capture", "--include-inbound-ports", "none"])
        work.chmod(0o777)
        agent = pod.start(_proxy_argv(work), workdir / "proxy.log", user=PROXY_UID)
        pod.run(
            [
                sys.executable,
                "-c",
                _READY,
                "http://127.0.0.1:15020/ready",
                "http://127.0.0.1:15001/",
                f"http://{NGINX}/",
            ]
        )
        best, raw = _load(pod, paths["wrk"], agent.pid, plan)
        if agent.poll() is not None:
            raise BenchError(f"sidecar proxy exited {agent.returncode}")
        stats = pod.run(
            [
                sys.executable,
                "-c",
                _GET,
                "http://127.0.0.1:15000/stats?filter=capture_outbound.requests",
            ]
        ).stdout
    finally:
        pod.close()
        peer.close()
        shutil.rmtree(work, ignore_errors=True)
    counted = sum(int(line.rpartition(": ")[2]) for line in stats.splitlines() if ": " in line)
    if counted < best["captured"].requests:
        raise BenchError(f"the captured runs did not go through the proxy: {stats.strip()}")
    raw["rules"] = rules
    raw["captured_requests_counted"] = counted
    return _measures(best, rules, plan), raw


def _wire(pod: Namespace, peer: Namespace) -> None:
    pod.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
             "netns", str(peer.holder.pid)])  # fmt: skip
    for ns, address in ((pod, POD), (peer, PEER)):
        ns.run(["ip", "link", "set", "lo", "up"])
        ns.run(["ip", "link", "set", "eth0", "up"])
        ns.run(["ip", "addr", "add", f"{address}/24", "dev", "eth0"])


def _proxy_argv(work: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sidecar",
        "proxy",
        "--capture=iptables",
        f"--upstream=http://{NGINX}",
        f"--work-dir={work}",
        "--concurrency=1",
        "--log-level=warning",
    ]


def _load(
    pod: Namespace, wrk: str, agent: int, plan: Plan
) -> tuple[dict[str, LoadResult], dict[str, Any]]:
    targets = {
        "explicit": ("http://127.0.0.1:15001/", None),
        "captured": (f"http://{NGINX}/", None),
        "direct": (f"http://{NGINX}/", PROXY_UID),
    }
    runs: dict[str, list[LoadResult]] = {k: [] for k in targets}
    for url, user in targets.values():  # warm-up
        pod.run([wrk, "-t2", "-c8", "-d1s", url], user=user)
    for _ in range(plan.rounds):
        for name, (url, user) in targets.items():
            before = cpu_seconds(agent)
            command = tools.wrk_command(wrk, url, seconds=plan.seconds, concurrency=CONNECTIONS)
            text = pod.run(command, user=user).stdout
            result = tools.parse_wrk(text, target=name, concurrency=CONNECTIONS)
            runs[name].append(result.with_cpu(cpu_seconds(agent) - before))
    best = {k: max(v, key=lambda r: r.rps) for k, v in runs.items()}
    pairs = [_together(pod, wrk, plan) for _ in range(TOGETHER_ROUNDS)]
    pairs.sort(key=lambda pair: pair[1].rps / max(pair[0].rps, 1.0))
    best["together.explicit"], best["together.captured"] = pairs[len(pairs) // 2]
    raw: dict[str, Any] = {"closed": {k: [r.to_json() for r in v] for k, v in runs.items()}}
    raw["together"] = [[e.to_json(), c.to_json()] for e, c in pairs]
    return best, raw


def _together(pod: Namespace, wrk: str, plan: Plan) -> tuple[LoadResult, LoadResult]:
    """Explicit and captured load at once, through the one Envoy worker."""
    half = CONNECTIONS // 2
    procs = [
        subprocess.Popen(
            pod.command(tools.wrk_command(wrk, url, seconds=plan.seconds, concurrency=half)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url in ("http://127.0.0.1:15001/", f"http://{NGINX}/")
    ]
    outputs = [proc.communicate(timeout=plan.seconds + 60)[0] for proc in procs]
    explicit, captured = (
        tools.parse_wrk(text, target=name, concurrency=half)
        for text, name in zip(outputs, ("explicit", "captured"), strict=True)
    )
    return explicit, captured


def measure_rules() -> dict[str, Any]:
    """``sidecar capture`` in fresh namespaces: wall time and its own ``ms``."""
    python_ms: list[float] = []
    wall_ms: list[float] = []
    own_ms: list[float] = []
    cpu_ms: list[float] = []
    for _ in range(RULE_SAMPLES):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        python_ms.append((time.monotonic() - started) * 1000)
        ns = Namespace()
        try:
            ns.run(["ip", "link", "set", "lo", "up"])
            started, cpu = time.monotonic(), _children_cpu()
            result = ns.run([sys.executable, "-m", "sidecar", "capture"])
            wall_ms.append((time.monotonic() - started) * 1000)
            cpu_ms.append((_children_cpu() - cpu) * 1000)
            own_ms.append(float(json.loads(result.stderr.splitlines()[-1])["ms"]))
        finally:
            ns.close()
    return {
        "python_ms": [round(v, 1) for v in python_ms],
        "wall_ms": [round(v, 1) for v in wall_ms],
        "install_ms": own_ms,
        "cpu_ms": [round(v, 1) for v in cpu_ms],
    }


def _children_cpu() -> float:
    """User + system seconds of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measures(best: dict[str, LoadResult], rules: dict[str, Any], plan: Plan) -> list[Measure]:
    rounds = f"best of {plan.rounds}" if plan.rounds > 1 else "1 run"
    out: list[Measure] = []
    labels = {
        "explicit": "explicit 127.0.0.1:15001",
        "captured": "captured (app calls nginx's IP)",
        "direct": "direct (UID 1337, not captured)",
    }
    for key in ("explicit", "captured", "direct"):
        r = best[key]
        out.append(
            Measure(
                "capture",
                f"capture.{key}.rps_c{CONNECTIONS}",
                f"{labels[key]}: throughput, {CONNECTIONS} conns ({rounds})",
                round(r.rps, 0),
                "req/s",
                baseline=None if key == "explicit" else best["explicit"].rps,
                baseline_label=None if key == "explicit" else "explicit",
                note=f"{r.errors} errors" if r.errors else "",
            )
        )
    explicit, captured = best["together.explicit"], best["together.captured"]
    out.append(
        Measure(
            "capture",
            "capture.together.rps",
            f"captured while explicit runs too, same Envoy, {CONNECTIONS // 2} + "
            f"{CONNECTIONS // 2} conns (median of {TOGETHER_ROUNDS})",
            round(captured.rps, 0),
            "req/s",
            baseline=explicit.rps,
            baseline_label="explicit, same moment",
            goal=THROUGHPUT_GOAL,
            note=f"{captured.errors + explicit.errors} errors"
            if captured.errors + explicit.errors
            else "",
        )
    )
    for key in ("explicit", "captured"):
        cpu = best[key].cpu_us
        out.append(
            Measure(
                "capture",
                f"capture.{key}.cpu_us",
                f"{labels[key]}: proxy CPU per request (agent + Envoy)",
                None if cpu is None else round(cpu, 1),
                "us",
                baseline=None if key == "explicit" else best["explicit"].cpu_us,
                baseline_label=None if key == "explicit" else "explicit",
            )
        )
    install = statistics.median(rules["install_ms"])
    wall = statistics.median(rules["wall_ms"])
    python = statistics.median(rules["python_ms"])
    out.append(
        Measure(
            "capture",
            "capture.rules.install_ms",
            f"rules installed, IPv4 + IPv6 (median of {RULE_SAMPLES}, fresh namespaces)",
            round(install, 1),
            "ms",
            compare="none",
            goal=RULES_GOAL,
        )
    )
    out.append(
        Measure(
            "capture",
            "capture.rules.wall_ms",
            "sidecar capture, start to exit (Python start-up included)",
            round(wall, 1),
            "ms",
            baseline=round(python, 1),
            baseline_label="python -c pass",
            compare="delta",
            note="wall time: waits for a core on a busy machine",
        )
    )
    out.append(
        Measure(
            "capture",
            "capture.rules.cpu_ms",
            "sidecar capture, CPU (user + system, iptables included)",
            round(statistics.median(rules["cpu_ms"]), 1),
            "ms",
            compare="none",
        )
    )
    return out


_READY = """
import sys, time, urllib.request
deadline = time.monotonic() + 60
for url in sys.argv[1:]:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"not ready: {url}")
        time.sleep(0.05)
"""
_GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
