"""The load generators and the upstream: find (or install) ``hey``, ``wrk`` and
``nginx``, run them with a bounded duration, parse what they print.

``hey`` (0.1.4) drives the webhook (POST with a body, TLS, keep-alive) and
every fixed-rate run. ``wrk`` (4.1.0) drives the proxy at fixed concurrency.
Both print percentiles; ``hey`` to 0.1 ms, ``wrk`` to 10 us.

A fixed rate is ``bench.rates.steady``, not ``hey -c N -q R`` (see there).

A missing tool is installed with ``apt-get install -y`` when running as root
on Debian; otherwise ``BenchError`` says what to install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.errors import BenchError

# tool -> Debian package
PACKAGES: dict[str, str] = {"hey": "hey", "wrk": "wrk", "nginx": "nginx-light"}
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


@dataclass(frozen=True)
class LoadResult:
    """One load run: what was asked and what came back."""

    tool: str
    target: str
    concurrency: int
    rate: float | None  # total requests/s asked for, None = as fast as possible
    seconds: float  # measured wall time of the run
    requests: int  # responses received (any status)
    ok: int  # 2xx responses
    errors: int  # non-2xx responses + socket errors
    rps: float  # 2xx responses per second
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    statuses: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    cpu_us: float | None = None  # the server's CPU time per answered request

    def with_cpu(self, seconds: float) -> LoadResult:
        """This result with the server's CPU time over the run, per answer."""
        return replace(self, cpu_us=seconds / self.requests * 1e6 if self.requests else None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def locate(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure(names: Sequence[str]) -> dict[str, str]:
    """Paths of the named tools, installing missing ones with apt-get."""
    missing = [n for n in names if locate(n) is None]
    if missing:
        _install([PACKAGES[n] for n in missing])
    paths: dict[str, str] = {}
    for name in names:
        path = locate(name)
        if path is None:
            raise BenchError(
                f"{name} is still missing after installing {PACKAGES[name]}; "
                f"install it by hand (apt-get install -y {PACKAGES[name]})"
            )
        paths[name] = path
    return paths


def _install(packages: list[str]) -> None:
    wanted = " ".join(packages)
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise BenchError(
            f"the bench needs {wanted}; install them (Debian: sudo apt-get install -y {wanted}) "
            "and run it again"
        )
    print(f"bench: installing {wanted} with apt-get (needed for the load runs)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = [apt, "install", "-y", "-q", *packages]
    options: dict[str, Any] = {"capture_output": True, "text": True, "env": env, "timeout": 600}
    result = subprocess.run(command, check=False, **options)
    if result.returncode != 0:
        # The package lists may be missing or stale: refresh them once.
        subprocess.run([apt, "update", "-q"], check=False, **options)
        result = subprocess.run(command, check=False, **options)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise BenchError(f"apt-get install -y {wanted} failed:\n{tail}")


# --- hey ---------------------------------------------------------------------

_HEY_TOTAL = re.compile(r"^\s*Total:\s+([\d.]+) secs", re.M)
_HEY_PCT = re.compile(r"^\s*(\d+)% in ([\d.]+) secs", re.M)
_HEY_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.M)
_HEY_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.+)$", re.M)


def hey_command(
    hey: str,
    url: str,
    *,
    seconds: float,
    concurrency: int,
    per_worker_rate: float | None = None,
    method: str = "GET",
    body_file: str | None = None,
    content_type: str | None = None,
) -> list[str]:
    command = [hey, "-z", f"{seconds:g}s", "-c", str(concurrency), "-m", method, "-t", "10"]
    if per_worker_rate:
        command += ["-q", f"{per_worker_rate:g}"]
    if body_file:
        command += ["-D", body_file]
    if content_type:
        command += ["-T", content_type]
    return [*command, url]


def parse_hey(
    text: str, *, target: str = "", concurrency: int = 0, rate: float | None = None
) -> LoadResult:
    total = _HEY_TOTAL.search(text)
    if total is None:
        raise BenchError(f"hey printed no summary:\n{text[-2000:]}")
    seconds = float(total.group(1))
    percentiles = {int(p): float(s) * 1000 for p, s in _HEY_PCT.findall(text)}
    statuses = {code: int(n) for code, n in _HEY_STATUS.findall(text)}
    errors_block = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    socket_errors = [(int(n), msg.strip()) for n, msg in _HEY_ERROR.findall(errors_block)]
    requests = sum(statuses.values())
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))
    errors = requests - ok + sum(n for n, _ in socket_errors)
    return LoadResult(
        tool="hey",
        target=target,
        concurrency=concurrency,
        rate=rate,
        seconds=seconds,
        requests=requests,
        ok=ok,
        errors=errors,
        rps=ok / seconds if seconds > 0 else 0.0,
        p50_ms=percentiles.get(50),
        p90_ms=percentiles.get(90),
        p99_ms=percentiles.get(99),
        statuses=statuses,
        error_samples=[f"{n} x {msg}" for n, msg in socket_errors[:3]],
    )


# --- wrk ---------------------------------------------------------------------

_WRK_DONE = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_WRK_PCT = re.compile(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def wrk_command(
    wrk: str, url: str, *, seconds: float, concurrency: int, threads: int = 2
) -> list[str]:
    threads = max(1, min(threads, concurrency))
    whole = max(1, round(seconds))  # wrk takes whole seconds only
    return [
        wrk,
        f"-c{concurrency}",
        f"-t{threads}",
        f"-d{whole}s",
        "--timeout",
        "10s",
        "--latency",
        url,
    ]


def parse_wrk(text: str, *, target: str = "", concurrency: int = 0) -> LoadResult:
    done = _WRK_DONE.search(text)
    if done is None:
        raise BenchError(f"wrk printed no summary:\n{text[-2000:]}")
    requests = int(done.group(1))
    seconds = float(done.group(2)) * _UNIT_MS[done.group(3)] / 1000
    block = text.split("Latency Distribution", 1)[1] if "Latency Distribution" in text else ""
    percentiles = {int(p): float(v) * _UNIT_MS[u] for p, v, u in _WRK_PCT.findall(block)}
    non2xx = _WRK_NON2XX.search(text)
    bad = int(non2xx.group(1)) if non2xx else 0
    sock = _WRK_SOCKET.search(text)
    socket_errors = sum(int(g) for g in sock.groups()) if sock else 0
    ok = requests - bad
    samples = [sock.group(0)] if sock else []
    return LoadResult(
        tool="wrk",
        target=target,
        concurrency=concurrency,
        rate=None,
        seconds=seconds,
        requests=requests,
        ok=ok,
        errors=bad + socket_errors,
        rps=ok / seconds if seconds > 0 else 0.0,
        p50_ms=percentiles.get(50),
        p90_ms=percentiles.get(90),
        p99_ms=percentiles.get(99),
        statuses={"2xx": ok, "other": bad} if bad else {"2xx": ok},
        error_samples=samples,
    )


# --- running -------------------------------------------------------------------


def run_tool(command: list[str], seconds: float) -> str:
    """Run a load generator, bounded: it gets its own duration plus a margin."""
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{command[0]} did not finish within {seconds + 30:g}s") from exc
    if result.returncode != 0:
        raise BenchError(
            f"{' '.join(command)} exited {result.returncode}:\n"
            f"{(result.stdout + result.stderr)[-2000:]}"
        )
    return result.stdout


def hey(
    path: str,
    url: str,
    *,
    seconds: float,
    concurrency: int,
    total_rate: float | None = None,
    method: str = "GET",
    body_file: str | None = None,
    content_type: str | None = None,
    target: str = "",
) -> LoadResult:
    """``hey`` for ``seconds``; ``total_rate`` is spread over the workers."""
    per_worker = total_rate / concurrency if total_rate else None
    command = hey_command(
        path,
        url,
        seconds=seconds,
        concurrency=concurrency,
        per_worker_rate=per_worker,
        method=method,
        body_file=body_file,
        content_type=content_type,
    )
    return parse_hey(
        run_tool(command, seconds), target=target or url, concurrency=concurrency, rate=total_rate
    )


def wrk(
    path: str, url: str, *, seconds: float, concurrency: int, threads: int = 2, target: str = ""
) -> LoadResult:
    command = wrk_command(path, url, seconds=seconds, concurrency=concurrency, threads=threads)
    return parse_wrk(run_tool(command, seconds), target=target or url, concurrency=concurrency)
