"""Processes the bench starts: free loopback ports, polling with a deadline,
a ``Service`` (subprocess with its output in files, stopped by SIGTERM then
SIGKILL), and what ``/proc`` says about a process (RSS)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from bench.errors import BenchError

T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def wait_until(
    check: Callable[[], T | bool | None],
    timeout: float,
    what: str,
    interval: float = 0.01,
) -> T:
    """Poll ``check`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value  # type: ignore[return-value]
        except BenchError:
            raise
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def http_status(url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


class Service:
    """A subprocess whose stdout/stderr go to files in ``directory``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        directory: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stdout_path = directory / f"{name}.stdout"
        self.stderr_path = directory / f"{name}.stderr"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> Service:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.started = time.monotonic()
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=self.env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise BenchError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from None
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.name} is not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} exited with code {self.proc.returncode}:\n{self.output_tail()}"
            )

    def output_tail(self, lines: int = 15) -> str:
        text = ""
        for path in (self.stderr_path, self.stdout_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_http(
        self, url: str, timeout: float = 30.0, context: ssl.SSLContext | None = None
    ) -> float:
        """Poll ``url`` until 200; return seconds since ``start``."""

        def ready() -> bool:
            self.check_alive()
            return http_status(url, timeout=1.0, context=context) == 200

        wait_until(ready, timeout, f"{self.name}: 200 from {url}", interval=0.005)
        return time.monotonic() - self.started

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group (nginx's workers are in it; ``sidecar proxy``
        stops its own Envoy), then SIGKILL at the deadline; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_mib(pid: int) -> float:
    """The process's resident set (VmRSS) in MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def _status_kib(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise BenchError(f"cannot read /proc/{pid}/status: {exc.strerror}") from None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {field}")


def load_average() -> float:
    """The 1-minute load average: how busy the machine was (others share it)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU time of ``pid`` (and its live children), in seconds.

    Unlike throughput, CPU time per request hardly moves when other work on
    the machine takes cores away: the noise-resistant figure of a run.
    """
    pids = [pid, *(child_pids(pid) if children else [])]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (all threads)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            found.extend(int(p) for p in (task / "children").read_text().split())
    return found
