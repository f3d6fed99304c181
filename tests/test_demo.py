"""``python -m demo`` (``make demo``) as a user runs it: a real subprocess, a
real server, its temporary directory under a private TMPDIR."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support import wait_for

ROOT = Path(__file__).resolve().parent.parent


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_describes_and_starts_nothing(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert "--keep" in result.stdout
    assert "starting" not in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_demo_passes_and_leaves_nothing_behind(tmp_path: Path) -> None:
    result = run_demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS: 5 AdmissionReviews" in result.stdout
    assert "curl" not in result.stdout  # no hint pointing at a stopped server
    assert list(tmp_path.iterdir()) == []


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_keep_leaves_a_server_the_printed_curl_line_reaches(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"curl --cacert (\S+) (https://127\.0\.0\.1:\d+)/healthz", result.stdout)
    stop = re.search(r"stop it with: kill (\d+) && rm -r (\S+)", result.stdout)
    assert found, result.stdout
    assert stop, result.stdout
    pid, directory = int(stop[1]), Path(stop[2])
    try:
        context = ssl.create_default_context(cafile=found[1])
        with urllib.request.urlopen(found[2] + "/healthz", context=context, timeout=5) as r:
            assert r.status == 200
        assert directory.parent == tmp_path
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: _gone(pid), timeout=20, what=f"demo server pid {pid} to stop")
    assert directory.exists()  # kept for the user, who removes it with the printed line
