"""The logs agent as a real process, and what tests ask of it.

``Agent`` runs ``python -m sidecar logs`` (what the image's entry point runs)
on an ephemeral agent port with its stdout/stderr in files, and offers what
the tests poll: readiness, metrics, the records it printed (stdout sink),
SIGTERM and SIGKILL. ``AppLog`` writes numbered lines the way an app does
(``O_APPEND``), and rotates or truncates its file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.support import free_port, http_status, wait_for

SIDECAR = [sys.executable, "-m", "sidecar", "logs"]
_SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


class Agent:
    def __init__(
        self,
        workdir: Path,
        logs: Path,
        sink: str = "stdout",
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.logs = logs
        self.sink = sink
        self.args = list(args)
        self.env = env or {}
        self.state = workdir / "state"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.runs = 0

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"stdout.{self.runs}"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"stderr.{self.runs}"

    def start(self, wait: bool = True) -> Agent:
        self.runs += 1
        self.port = free_port()
        argv = [
            *SIDECAR,
            f"--path={self.logs}",
            f"--state-dir={self.state}",
            f"--agent-addr=127.0.0.1:{self.port}",
            f"--sink={self.sink}",
            *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
        env.update(self.env)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        if wait:
            self.wait(self.ready, what="the logs agent's /ready")
        return self

    def wait(self, check: Callable[[], object], what: str, timeout: float = 15) -> None:
        """Poll ``check`` with a deadline; stop at once when the agent died."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            with contextlib.suppress(OSError):
                if check():
                    return
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.02)

    def ready(self) -> bool:
        return http_status(f"http://127.0.0.1:{self.port}/ready", timeout=1) == 200

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}: {self.stderr()[-2000:]}")

    def metrics(self) -> dict[str, float]:
        """``name{labels}`` -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match and not line.startswith("#"):
                key = match.group(1) + (f"{{{match.group(2)}}}" if match.group(2) else "")
                values[key] = float(match.group(3))
        return values

    def metric(self, name: str, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return self.metrics().get(f"{name}{{{want}}}" if want else name, 0.0)

    def acknowledged(self, path: Path) -> None:
        """Wait until everything written to ``path`` is acknowledged and
        checkpointed (the lag reaches 0 only after the checkpoint is written)."""
        eventually(
            lambda: self.metric("sidecar_logs_lag_bytes", file=str(path)) == 0,
            what=f"everything in {path.name} acknowledged",
        )

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stderr(self) -> str:
        return "".join(
            (self.workdir / f"stderr.{n}").read_text(errors="replace")
            for n in range(1, self.runs + 1)
            if (self.workdir / f"stderr.{n}").exists()
        )

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.stderr().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def printed(self) -> list[dict[str, Any]]:
        """Records the stdout sink wrote, over every run."""
        records = []
        for n in range(1, self.runs + 1):
            path = self.workdir / f"stdout.{n}"
            if path.exists():
                for line in path.read_text().splitlines():
                    if line.strip():
                        records.append(json.loads(line))
        return records


class AppLog:
    """An app's log file: numbered lines appended with O_APPEND."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self.fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, lines: int = 1, size: int = 60, raw: bytes | None = None) -> None:
        if raw is not None:
            os.write(self.fd, raw)
            return
        chunk = []
        for _ in range(lines):
            text = f"line {self.count:08d} "
            chunk.append(text + "x" * max(0, size - len(text)) + "\n")
            self.count += 1
        os.write(self.fd, "".join(chunk).encode())

    def reopen(self) -> None:
        os.close(self.fd)
        self.fd = self._open()

    def rotate(self, suffix: str = ".1") -> Path:
        """Rename and create: the app reopens its log under the old name."""
        target = self.path.with_name(self.path.name + suffix)
        os.rename(self.path, target)
        os.close(self.fd)
        self.fd = self._open()
        return target

    def copytruncate(self, suffix: str = ".1") -> Path:
        """logrotate's copytruncate, done by the app between two writes."""
        target = self.path.with_name(self.path.name + suffix)
        target.write_bytes(self.path.read_bytes())
        os.truncate(self.path, 0)
        return target

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def eventually(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """``tests.support.wait_for`` with room for a loaded machine (agents start,
    read and ship in well under a second when it is not)."""
    wait_for(check, timeout=timeout, what=what)


def numbers(messages: list[str]) -> list[int]:
    """The line numbers ``AppLog`` wrote, from messages."""
    return [int(m.split()[1]) for m in messages if m.startswith("line ")]
