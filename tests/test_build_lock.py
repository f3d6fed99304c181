"""``e2e.build``'s lock: a second build waiting on the first says whom it waits
for (pid, what it builds, its log) instead of sitting silent. Two real
processes on one cache directory."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

from tests.support import wait_for

ROOT = Path(__file__).resolve().parent.parent

HOLDER = """
import sys
from pathlib import Path
from e2e import build
with build._build_lock():
    build._note_lock("compiling kube-apiserver v1.0.0", Path(sys.argv[1]))
    print("held", flush=True)
    sys.stdin.read()
"""

WAITER = """
from e2e import build
with build._build_lock():
    print("acquired", flush=True)
"""


def _python(code: str, cache: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SIDECAR_E2E_CACHE": str(cache)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_waiting_build_names_the_holder_and_its_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    holder = _python(HOLDER, tmp_path, str(log))
    waiter: subprocess.Popen[str] | None = None
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        waiter = _python(WAITER, tmp_path)
        assert waiter.stderr is not None
        readable, _, _ = select.select([waiter.stderr], [], [], 30)
        assert readable, "the waiting build said nothing for 30 s"
        line = waiter.stderr.readline()
        assert "waiting for another build of the binaries to finish" in line
        assert f"pid {holder.pid}, compiling kube-apiserver v1.0.0 (log: {log})" in line
        assert waiter.poll() is None  # still waiting
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    assert waiter is not None
    out, err = waiter.communicate(timeout=30)
    assert out == "acquired\n"
    assert "the other build finished after" in err
    wait_for(lambda: (tmp_path / ".build.lock").read_text() == "", what="lock note cleared")
