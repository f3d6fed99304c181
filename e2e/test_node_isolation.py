"""The local node leaves nothing on the host (issue 11, item 3).

Each test starts a second sandboxed cluster next to the one the suite runs
in, compares the host (``e2e.hoststate``: links, iptables rules, sysctls,
mounts, kubelet/containerd/CNI paths, in the host's network namespace, and
the cgroup trees of the sandboxes under test: other clusters on the machine
have trees of their own) before and after, and checks that no process is
left in the sandbox's namespaces (held open meanwhile: the kernel reuses the
numbers of freed namespaces, and a later cluster's pods must not count as
left behind): after ``cluster up`` + ``cluster down``, and after a SIGKILLed
``cluster run`` followed by the next start. tests/test_node_leak_detection.py
plants one leak of each kind to show that the comparison finds it.

Only with the local sandboxed node (``make e2e-local`` as root); marked
``sandbox`` so that the second, installed-injector session leaves them out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import hoststate, sandbox
from e2e.cluster import ClusterInfo

ROOT = Path(__file__).resolve().parent.parent
HOST_PID = os.environ.get("SIDECAR_E2E_HOST_PID", "")
pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(
        not HOST_PID or os.geteuid() != 0,
        reason="needs the local sandboxed node (make e2e-local as root)",
    ),
]
TIMEOUT = 600


def _on_host(*command: str) -> list[str]:
    """command in the host's network namespace, where a user starts clusters
    (this suite runs inside its own cluster's)."""
    return ["nsenter", f"--net=/proc/{HOST_PID}/ns/net", "--", *command]


def _cluster(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _on_host(sys.executable, "-m", "e2e.cluster", *args),
        cwd=ROOT,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )


def _holder_namespaces(info: ClusterInfo, stack: contextlib.ExitStack) -> set[str]:
    """The sandbox's namespaces, pinned until the test ends (hoststate.pinned)."""
    unshare = info.pids["sandbox"]
    holder = Path(f"/proc/{unshare}/task/{unshare}/children").read_text().split()[0]
    return stack.enter_context(hoststate.pinned(int(holder)))


@pytest.fixture
def pins() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def _host(ours: set[str]) -> dict[str, Any]:
    """The host's snapshot, with the cgroup trees of the sandboxes under test
    alone: other clusters on this machine come and go with trees of their own."""
    found = hoststate.snapshot(int(HOST_PID))
    return {**found, "cgroups": [root for root in found["cgroups"] if root in ours]}


def _settled(
    namespaces: set[str], before: dict[str, Any], ours: set[str]
) -> tuple[list[str], list[str]]:
    """Processes left in namespaces and host differences, once both are empty or
    a deadline passed (the kernel tears a PID namespace down asynchronously)."""
    deadline = time.monotonic() + 30
    while True:
        left = hoststate.processes_in(namespaces)
        changed = hoststate.differences(before, _host(ours))
        if (not left and not changed) or time.monotonic() > deadline:
            return left, changed
        time.sleep(0.5)


def test_up_then_down_leaves_nothing_on_the_host(
    tmp_path: Path, pins: contextlib.ExitStack
) -> None:
    state = tmp_path / "state"
    env = {"SIDECAR_E2E_STATE": str(state), "SIDECAR_E2E_NODE": "1"}
    ours = {sandbox.cgroup_root(state)}
    before = _host(ours)
    try:
        started = _cluster("up", env=env)
        assert started.returncode == 0, started.stderr
        info = ClusterInfo.load(state / "cluster.json")
        assert info.node, "cluster up started no node"
        namespaces = _holder_namespaces(info, pins)
        pods = _cluster("exec", "--", info.kubectl, "get", "pods", "-A", "--no-headers", env=env)
        assert "Running" in pods.stdout, pods.stdout + pods.stderr
        assert "coredns" in pods.stdout
        # While it runs, the host sees its cgroup tree and nothing else.
        during = hoststate.differences(before, _host(ours))
        assert during == [f"cgroups: added {sandbox.cgroup_root(state)}"]
    finally:
        stopped = _cluster("down", env=env)
    assert stopped.returncode == 0, stopped.stderr
    left, changed = _settled(namespaces, before, ours)
    assert left == [], f"processes left in the sandbox's namespaces: {left}"
    assert changed == [], "the host changed:\n" + "\n".join(changed)
    assert not state.exists()


def test_a_sigkilled_run_is_cleaned_up_by_the_next_start(
    tmp_path: Path, pins: contextlib.ExitStack
) -> None:
    marker = tmp_path / "cluster-json"
    before = _host(set())
    script = f'echo "$SIDECAR_E2E_CLUSTER" > {marker} && exec sleep {TIMEOUT}'
    run = subprocess.Popen(
        _on_host(sys.executable, "-m", "e2e.cluster", "run", "--", "sh", "-c", script),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (marker.exists() and marker.read_text().strip()):
            assert run.poll() is None, run.stderr.read() if run.stderr else ""
            assert time.monotonic() < deadline, "the cluster did not start"
            time.sleep(0.2)
        cluster_json = Path(marker.read_text().strip())
        state = cluster_json.parent
        namespaces = _holder_namespaces(ClusterInfo.load(cluster_json), pins)
    finally:
        run.send_signal(signal.SIGKILL)  # a run killed as a CI timeout would kill it
        run.wait()
    killed = sandbox.cgroup_root(state)
    assert killed in _host({killed})["cgroups"]

    following = _cluster("run", "--", "sh", "-c", 'echo "$SIDECAR_E2E_CLUSTER"')
    assert following.returncode == 0, following.stderr
    ours = {killed, sandbox.cgroup_root(Path(following.stdout.strip()).parent)}
    left, changed = _settled(namespaces, before, ours)
    assert left == [], f"processes left in the killed sandbox's namespaces: {left}"
    assert changed == [], "the host changed:\n" + "\n".join(changed)
    assert not state.exists()
