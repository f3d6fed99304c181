"""Network namespaces the tests create, and leave nothing behind.

``Namespace`` is an anonymous network namespace held by a sleeping process
(``unshare --net``): no name under /run/netns, no host interface, no rule on
the host. Processes join it with ``nsenter --net``; the test process itself
reaches into it from a helper thread that called ``setns`` (``call``). Every
process started here gets ``PR_SET_PDEATHSIG`` (it dies with the test run
even when pytest is killed), and ``close()`` kills whatever still lives in
the namespace, after which the kernel frees it with its interfaces and its
iptables rules.

``Link`` is the usual pair: a "pod" namespace and a "peer" namespace (where
the servers of the tests live), joined by a veth pair, with IPv4 and IPv6
addresses and default routes both ways.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tests.support import wait_for

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1

POD_V4 = "10.251.0.2"
PEER_V4 = "10.251.0.1"
PEER_V4_EXTRA = ("10.251.0.3", "10.251.0.4")
POD_V6 = "fd00:251::2"
PEER_V6 = "fd00:251::1"

_libc = ctypes.CDLL(None, use_errno=True)


def available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root to create network namespaces"
    for tool in ("unshare", "nsenter", "ip", "iptables-restore", "ip6tables-restore"):
        if shutil.which(tool) is None:
            return False, f"needs {tool} (util-linux, iproute2, iptables)"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return False, f"unshare --net failed: {probe.stderr.decode().strip()}"
    return True, ""


def die_with_parent() -> None:
    """Pre-exec hook: SIGKILL this child when the test process goes away."""
    _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


def inode(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


class Namespace:
    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[Any]] = []
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sleep", "infinity"],
            preexec_fn=die_with_parent,  # noqa: PLW1509
            start_new_session=True,
        )
        ours = inode(os.getpid())
        self.inode: str = wait_for(
            lambda: (found := inode(self.holder.pid)) != ours and found,
            timeout=10,
            what=f"namespace {name}",
        )
        self.path = f"/proc/{self.holder.pid}/ns/net"
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def command(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", "--", *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=die_with_parent,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{self.name}: {' '.join(argv)} exited {result.returncode}: {result.stderr}"
            )
        return result

    def start(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process in this namespace (stopped by ``close``)."""
        proc = subprocess.Popen(
            self.command(argv),
            preexec_fn=die_with_parent,  # noqa: PLW1509
            start_new_session=True,
            **kwargs,
        )
        self.procs.append(proc)
        return proc

    def adopt(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        """Track a process started elsewhere that lives in this namespace."""
        self.procs.append(proc)
        return proc

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a thread of this process that joined the
        namespace (sockets it opens live there)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix=f"netns-{self.name}", initializer=self._join
            )
        return self._executor.submit(fn, *args).result()

    def _join(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns({self.path}): {os.strerror(errno)}")
        finally:
            os.close(fd)

    def pids(self) -> list[int]:
        """Every process in this namespace."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and inode(int(entry.name)) == self.inode:
                found.append(int(entry.name))
        return found

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for proc in self.procs:
            _kill_group(proc)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _kill_group(self.holder)
        wait_for(lambda: not self.pids(), timeout=10, what=f"namespace {self.name} to empty")


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


class Link:
    """A pod namespace and a peer namespace joined by a veth pair."""

    def __init__(self) -> None:
        self.pod = Namespace("pod")
        try:
            self.peer = Namespace("peer")
            self._wire()
        except BaseException:
            self.close()
            raise

    def _wire(self) -> None:
        veth = "ip link add eth0 type veth peer name eth0 netns"
        self.pod.run([*veth.split(), str(self.peer.holder.pid)])
        pod = [
            "ip link set lo up",
            "ip link set eth0 up",
            f"ip addr add {POD_V4}/24 dev eth0",
            f"ip -6 addr add {POD_V6}/64 dev eth0 nodad",
            f"ip route add default via {PEER_V4}",
            f"ip -6 route add default via {PEER_V6}",
        ]
        peer = [
            "ip link set lo up",
            "ip link set eth0 up",
            f"ip addr add {PEER_V4}/24 dev eth0",
            *(f"ip addr add {address}/24 dev eth0" for address in PEER_V4_EXTRA),
            f"ip -6 addr add {PEER_V6}/64 dev eth0 nodad",
        ]
        self.pod.run(["sh", "-ec", "; ".join(pod)])
        self.peer.run(["sh", "-ec", "; ".join(peer)])

    def close(self) -> None:
        for ns in (getattr(self, "peer", None), self.pod):
            if ns is not None:
                ns.close()
