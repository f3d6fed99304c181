"""What a node could leave on the host, as a comparable snapshot.

``snapshot(host_pid)`` collects, in the host's network namespace (that of
``host_pid``, entered with ``nsenter``) and mount namespace: network links,
iptables and ip6tables rules, every sysctl (net.* ones are per network
namespace, hence the nsenter), mount points, sandbox cgroup trees and the
paths kubelet, containerd and CNI use by default. ``differences(before,
after)`` lists what changed, ignoring counters the kernel moves by itself.
``processes_in(namespaces)`` lists processes still inside given namespaces;
``pinned(pid)`` names pid's namespaces and holds them open meanwhile, as the
kernel gives the numbers of freed namespaces to new ones (a later cluster's
pods would otherwise look like processes left behind).

``python -m e2e.hoststate`` prints the snapshot of the namespaces it runs in
as JSON (what ``snapshot`` runs through nsenter).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from e2e import cgroups

# Sysctls the kernel changes on its own (counters, random values).
VOLATILE = re.compile(
    r"^fs/(dentry-state|file-nr|inode-nr|inode-state|aio-nr|quota/)"
    r"|^kernel/(ns_last_pid|random/|pty/nr|perf_event_max_sample_rate|tainted)"
    r"|nf_conntrack_count$"
)
COUNTERS = re.compile(r" \[\d+:\d+\]$")  # iptables-save chain counters
NODE_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/run/netns",
    "/etc/cni/net.d",
    "/opt/cni",
)
NAMESPACES = ("net", "mnt", "pid", "uts")


def _command(*args: str) -> list[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    return result.stdout.splitlines() if result.returncode == 0 else []


def _rules() -> list[str]:
    lines = []
    for tool in ("iptables-save", "ip6tables-save"):
        for line in _command(tool):
            if line.startswith("#"):
                continue
            lines.append(f"{tool}: {COUNTERS.sub('', line)}")
    return sorted(lines)


def _sysctls() -> dict[str, str]:
    found = {}
    for directory, _, files in os.walk("/proc/sys"):
        for name in files:
            path = Path(directory) / name
            key = str(path.relative_to("/proc/sys"))
            if VOLATILE.search(key):
                continue
            try:
                found[key] = path.read_text().strip()
            except OSError:
                continue
    return found


def collect() -> dict[str, Any]:
    """The snapshot of the namespaces this process is in."""
    links = sorted(
        line.split(":")[1].strip().split("@")[0] for line in _command("ip", "-o", "link")
    )
    mounts = sorted(
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    return {
        "links": links,
        "rules": _rules(),
        "sysctls": _sysctls(),
        "mounts": mounts,
        "cgroups": sorted(cgroups.roots()),
        "paths": sorted(path for path in NODE_PATHS if os.path.lexists(path)),
    }


def snapshot(host_pid: int) -> dict[str, Any]:
    """collect(), run in the network namespace of host_pid."""
    result = subprocess.run(
        ["nsenter", f"--net=/proc/{host_pid}/ns/net", "--", sys.executable, "-m", "e2e.hoststate"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    snap: dict[str, Any] = json.loads(result.stdout)
    return snap


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    found = []
    for key in ("links", "rules", "mounts", "cgroups", "paths"):
        added = sorted(set(after[key]) - set(before[key]))
        removed = sorted(set(before[key]) - set(after[key]))
        found += [f"{key}: added {item}" for item in added]
        found += [f"{key}: removed {item}" for item in removed]
    old, new = before["sysctls"], after["sysctls"]
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            found.append(f"sysctl {name}: {old.get(name)!r} -> {new.get(name)!r}")
    return found


def namespaces_of(pid: int) -> set[str]:
    """The namespace identities (e.g. ``net:[4026532281]``) of pid."""
    return {os.readlink(f"/proc/{pid}/ns/{kind}") for kind in NAMESPACES}


@contextlib.contextmanager
def pinned(pid: int, kinds: tuple[str, ...] = NAMESPACES) -> Iterator[set[str]]:
    """namespaces_of(pid) (those of kinds), each held open until the block
    ends, so that no namespace created meanwhile gets one of their numbers."""
    with contextlib.ExitStack() as stack:
        fds = []
        for kind in kinds:
            fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
            stack.callback(os.close, fd)
            fds.append(fd)
        yield {os.readlink(f"/proc/self/fd/{fd}") for fd in fds}


def processes_in(namespaces: set[str]) -> list[str]:
    """`pid command` of every process in any of namespaces."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            mine = {os.readlink(entry / "ns" / kind) for kind in NAMESPACES}
            command = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if mine & namespaces:
            found.append(f"{entry.name} {command}")
    return found


if __name__ == "__main__":
    json.dump(collect(), sys.stdout)
