"""The leak check of e2e/test_node_isolation.py finds every kind of leak it claims to.

e2e/test_node_isolation.py proves that ``cluster down`` and the start after
a SIGKILLed run leave the host as it was, by comparing ``e2e.hoststate``
snapshots and looking for processes in the sandbox's namespaces. Here one
leak of each kind is planted, for real, where it harms nothing: links,
iptables rules, a network sysctl, mounts and node paths in a private network
and mount namespace (``unshare``), a cgroup tree under the sandbox prefix
(removed again), a process in a namespace of its own. The check must name
each one, and nothing once they are gone.

Root only (namespaces, iptables, cgroups), like the node itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e import cgroups, hoststate

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("iptables") is None,
    reason="needs root, util-linux unshare and iptables (as the e2e node does)",
)

# Run in fresh network and mount namespaces: snapshot, plant, snapshot.
PLANT = r"""
import json, subprocess, sys
from pathlib import Path
from e2e import hoststate

def run(*command):
    subprocess.run(command, check=True, capture_output=True)

run("ip", "link", "add", "leak0", "type", "bridge")  # as the CNI bridge
forwarding = Path("/proc/sys/net/ipv4/conf/leak0/forwarding")
before = hoststate.collect()
run("ip", "link", "add", "leak1", "type", "veth", "peer", "name", "leak2")  # as a pod's
run("iptables", "-t", "nat", "-N", "LEAK-CHAIN")
forwarding.write_text("1" if forwarding.read_text().strip() == "0" else "0")
run("mount", "-t", "tmpfs", "leak", "/var/lib")
Path("/var/lib/kubelet").mkdir()
json.dump(hoststate.differences(before, hoststate.collect()), sys.stdout)
"""


def test_each_planted_host_change_is_named() -> None:
    result = subprocess.run(
        ["unshare", "--net", "--mount", "--propagation", "private", sys.executable, "-c", PLANT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    found = "\n".join(json.loads(result.stdout))
    for leak in (
        "links: added leak1",
        "rules: added iptables-save: :LEAK-CHAIN -",
        "sysctl net/ipv4/conf/leak0/forwarding: ",
        "mounts: added /var/lib",
        "paths: added /var/lib/kubelet",
    ):
        assert leak in found, f"{leak!r} not in:\n{found}"


def test_a_left_cgroup_tree_is_named() -> None:
    root = f"/{cgroups.PREFIX}leak-{os.getpid()}"
    before: dict[str, object] = {"links": [], "rules": [], "mounts": [], "paths": [], "sysctls": {}}
    cgroups.create(root)
    try:
        leaked = hoststate.differences(
            {**before, "cgroups": []}, {**before, "cgroups": sorted(cgroups.roots())}
        )
        assert f"cgroups: added {root}" in leaked
    finally:
        cgroups.remove(root, timeout=5)
    assert root not in cgroups.roots()


def test_a_process_left_in_a_namespace_is_named() -> None:
    stray = subprocess.Popen(["unshare", "--net", "--uts", "sleep", "600"])
    with contextlib.ExitStack() as stack:
        try:
            _wait_unshared(stray.pid)
            namespaces = stack.enter_context(hoststate.pinned(stray.pid, ("net", "uts")))
            found = hoststate.processes_in(namespaces)
            assert any(entry.startswith(f"{stray.pid} ") for entry in found), found
        finally:
            stray.kill()
            stray.wait()
        assert hoststate.processes_in(namespaces) == []


def _wait_unshared(pid: int) -> None:
    """Until unshare has moved pid to new network and UTS namespaces."""
    own = hoststate.namespaces_of(os.getpid())
    deadline = time.monotonic() + 10
    while {entry.split(":")[0] for entry in hoststate.namespaces_of(pid) - own} != {"net", "uts"}:
        assert time.monotonic() < deadline, f"process {pid} never left this process's namespaces"
        time.sleep(0.05)
