"""A steady request rate, and percentiles of per-request times.

A fixed rate is not ``hey -c N -q R``: hey starts every worker's ticker at the
same instant, so N requests arrive together every 1/R s and queue behind
each other (measured here: /healthz p50 3.2 ms with 20 workers at 10/s each,
1.1 ms with 2 at 100/s). ``steady`` runs ``streams`` hey processes of one
worker each, started 1/rate s apart, so requests are spread evenly, and
merges their per-request CSV (``hey -o csv``; the first request of each
stream, which carries the TLS handshake, is left out). A stream whose answer
is late skips ticks (hey's ticker drops them), so a rate that was not held is
reported as such rather than hidden.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Sequence

from bench.errors import BenchError
from bench.tools import LoadResult, hey_command


def parse_hey_csv(text: str) -> list[tuple[float, int, float]]:
    """(response time s, status, offset s) per request from ``hey -o csv``."""
    rows = []
    for line in text.splitlines()[1:]:
        parts = line.strip().split(",")
        if len(parts) < 8:
            continue
        try:
            rows.append((float(parts[0]), int(parts[6]), float(parts[7])))
        except ValueError:
            continue
    return rows


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def steady(
    path: str,
    url: str,
    *,
    rate: float,
    seconds: float,
    streams: int,
    method: str = "GET",
    body_file: str | None = None,
    content_type: str | None = None,
    target: str = "",
) -> LoadResult:
    """``rate`` requests/s in total from ``streams`` staggered one-worker hey processes."""
    per_stream = rate / streams
    command = hey_command(
        path,
        url,
        seconds=seconds,
        concurrency=1,
        per_worker_rate=per_stream,
        method=method,
        body_file=body_file,
        content_type=content_type,
    )
    command[1:1] = ["-o", "csv"]
    procs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(streams):
            procs.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            )
            time.sleep(1 / rate)
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=seconds + 30)
            if proc.returncode != 0:
                raise BenchError(f"{' '.join(command)} exited {proc.returncode}: {err[-500:]}")
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    samples: list[tuple[float, int]] = []
    for out in outputs:
        rows = sorted(parse_hey_csv(out), key=lambda r: r[2])
        samples.extend((t, code) for t, code, _ in rows[1:])
    return summarize(
        samples, tool="hey", target=target or url, concurrency=streams, rate=rate, seconds=seconds
    )


def summarize(
    samples: Sequence[tuple[float, int]],
    *,
    tool: str,
    target: str,
    concurrency: int,
    rate: float | None,
    seconds: float,
) -> LoadResult:
    """A ``LoadResult`` from (response time s, status) samples."""
    ok_times = sorted(t * 1000 for t, code in samples if 200 <= code < 300)
    statuses: dict[str, int] = {}
    for _, code in samples:
        statuses[str(code)] = statuses.get(str(code), 0) + 1
    expected = int(rate * seconds) if rate else 0
    missing = max(0, int(expected * 0.9) - len(samples)) if expected else 0
    errors = len(samples) - len(ok_times)
    return LoadResult(
        tool=tool,
        target=target,
        concurrency=concurrency,
        rate=rate,
        seconds=seconds,
        requests=len(samples),
        ok=len(ok_times),
        errors=errors + missing,
        rps=len(ok_times) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(ok_times, 50),
        p90_ms=percentile(ok_times, 90),
        p99_ms=percentile(ok_times, 99),
        statuses=statuses,
        error_samples=[f"{missing} requests short of 90% of the rate asked (answers too slow)"]
        if missing
        else [],
    )
