"""kill -9 at random moments, while an app writes, rotates and truncates:
every line arrives, and each kill re-sends at most one batch."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from standins.logsink import NdjsonStandIn
from tests.logs.harness import Agent, eventually, numbers

LINES = 60_000


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 11])
def test_sigkill_at_random_moments_loses_no_line(
    agent: Callable[..., Agent], ndjson: NdjsonStandIn, logs: Path, seed: int
) -> None:
    rng = random.Random(seed)
    a = agent(sink=ndjson.url, args=["--batch-bytes=32Ki", "--max-line=4Ki", "--flush-timeout=30s"])
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.logs.writer",
            str(logs),
            f"--lines={LINES}",
            "--rate=8000",
            "--rotate-every=4000",
            f"--seed={seed}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    kills = 0
    try:
        while writer.poll() is None:
            time.sleep(rng.uniform(0.2, 0.9))
            a.kill()
            kills += 1
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0.1, 0.6))  # down for a while: rotations happen meanwhile
            a.start(wait=False)
        assert writer.wait(60) == 0
        assert (writer.stdout.read() if writer.stdout else "").startswith(f"done {LINES}")
        a.wait(a.ready, what="the last agent ready")

        def all_there() -> bool:
            with ndjson.lock:
                return len({int(r["message"][5:13]) for r in ndjson.records}) == LINES

        eventually(all_there, what=f"all {LINES} lines at the sink", timeout=120)
        assert a.terminate() == 0
    finally:
        if writer.poll() is None:
            writer.kill()
    with ndjson.lock:
        arrived = Counter(numbers([r["message"] for r in ndjson.records]))
        largest = max(r.records for r in ndjson.requests)
    assert set(arrived) == set(range(LINES))
    duplicates = sum(arrived.values()) - LINES
    print(f"kills={kills} duplicates={duplicates} largest_request={largest}")
    assert kills >= 5
    assert duplicates <= kills * largest, (duplicates, kills, largest)
    assert not [m for r in ndjson.records if len(m := r["message"]) != 120]  # no torn lines
