"""The local node leaves nothing on the host (issue 11, item 3).

Each test starts a second sandboxed cluster next to the one the suite runs
in, compares the host (``e2e.hoststate``: links, iptables rules, sysctls,
mounts, cgroup trees, kubelet/containerd/CNI paths, in the host's network
namespace) before and after, and checks that no process is left in the
sandbox's namespaces: after ``cluster up`` + ``cluster down``, and after a
SIGKILLed ``cluster run`` followed by the next start.

Only with the local sandboxed node (``make e2e-local`` as root); marked
``sandbox`` so that the second, installed-injector session leaves them out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e import hoststate
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


def _holder_namespaces(info: ClusterInfo) -> set[str]:
    unshare = info.pids["sandbox"]
    holder = Path(f"/proc/{unshare}/task/{unshare}/children").read_text().split()[0]
    return hoststate.namespaces_of(int(holder))


def _cgroup_root(state_dir: Path) -> str:
    return str(json.loads((state_dir / "plan.json").read_text())["cgroup_root"])


def _settled(namespaces: set[str], before: dict[str, object]) -> tuple[list[str], list[str]]:
    """Processes left in namespaces and host differences, once both are empty or
    a deadline passed (the kernel tears a PID namespace down asynchronously)."""
    deadline = time.monotonic() + 30
    while True:
        left = hoststate.processes_in(namespaces)
        changed = hoststate.differences(before, hoststate.snapshot(int(HOST_PID)))
        if (not left and not changed) or time.monotonic() > deadline:
            return left, changed
        time.sleep(0.5)


def test_up_then_down_leaves_nothing_on_the_host(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"SIDECAR_E2E_STATE": str(state), "SIDECAR_E2E_NODE": "1"}
    before = hoststate.snapshot(int(HOST_PID))
    try:
        started = _cluster("up", env=env)
        assert started.returncode == 0, started.stderr
        info = ClusterInfo.load(state / "cluster.json")
        assert info.node, "cluster up started no node"
        namespaces = _holder_namespaces(info)
        pods = _cluster("exec", "--", info.kubectl, "get", "pods", "-A", "--no-headers", env=env)
        assert "Running" in pods.stdout, pods.stdout + pods.stderr
        assert "coredns" in pods.stdout
        # While it runs, the host sees its cgroup tree and nothing else.
        during = hoststate.differences(before, hoststate.snapshot(int(HOST_PID)))
        assert during == [f"cgroups: added {_cgroup_root(state)}"]
    finally:
        stopped = _cluster("down", env=env)
    assert stopped.returncode == 0, stopped.stderr
    left, changed = _settled(namespaces, before)
    assert left == [], f"processes left in the sandbox's namespaces: {left}"
    assert changed == [], "the host changed:\n" + "\n".join(changed)
    assert not state.exists()


def test_a_sigkilled_run_is_cleaned_up_by_the_next_start(tmp_path: Path) -> None:
    marker = tmp_path / "cluster-json"
    before = hoststate.snapshot(int(HOST_PID))
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
        namespaces = _holder_namespaces(ClusterInfo.load(cluster_json))
        cgroup_root = _cgroup_root(state)
    finally:
        run.send_signal(signal.SIGKILL)  # a run killed as a CI timeout would kill it
        run.wait()
    assert cgroup_root in hoststate.snapshot(int(HOST_PID))["cgroups"]

    following = _cluster("run", "--", "true")
    assert following.returncode == 0, following.stderr
    left, changed = _settled(namespaces, before)
    assert left == [], f"processes left in the killed sandbox's namespaces: {left}"
    assert changed == [], "the host changed:\n" + "\n".join(changed)
    assert not state.exists()
