"""Can this machine run the e2e node? Each missing piece names its fix.

Checked before anything starts, so that a missing package or capability is
one clear message instead of a component timing out later.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from e2e import cgroups

CNI_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
# Capability bits (linux/capability.h) the sandbox needs as root.
CAPABILITIES = {"CAP_SYS_ADMIN": 21, "CAP_NET_ADMIN": 12, "CAP_SYS_CHROOT": 18}
TOOLS = {
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
    "ip": "iproute2",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "iptables-save": "iptables",
}


@dataclass(frozen=True)
class Host:
    """Where the node's outside tools are (passed to the sandbox)."""

    runc: str
    cni_bin_dir: str


def _capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _search_path() -> str:
    extra = ("/usr/local/sbin", "/usr/sbin", "/sbin")
    return os.pathsep.join([os.environ.get("PATH", ""), *extra])


def problems() -> list[str]:
    """Everything that stops the node here, each with its fix; empty when all is well."""
    if os.geteuid() != 0:
        return [
            "the node needs root (namespaces, mounts, cgroups): run as root, or set "
            "SIDECAR_E2E_NODE=0 for the control plane alone (nodes tests then skip)"
        ]
    found = []
    caps = _capabilities()
    missing_caps = [name for name, bit in CAPABILITIES.items() if not caps >> bit & 1]
    if missing_caps:
        found.append(
            f"this process lacks {', '.join(missing_caps)}: run the node as root outside a "
            "restricted container (e.g. docker run --privileged)"
        )
    for tool, package in TOOLS.items():
        if shutil.which(tool, path=_search_path()) is None:
            found.append(f"{tool} not found: apt-get install {package}")
    if shutil.which("runc", path=_search_path()) is None:
        found.append("runc not found: apt-get install runc (crun refuses hybrid cgroups)")
    if _cni_dir() is None:
        found.append(
            f"CNI plugins ({', '.join(CNI_PLUGINS)}) not found in {' or '.join(CNI_DIRS)}: "
            "apt-get install containernetworking-plugins"
        )
    if "overlay" not in Path("/proc/filesystems").read_text():
        found.append("the kernel has no overlay filesystem (containerd's overlayfs snapshotter)")
    if not cgroups.hierarchies():
        found.append("no cgroup filesystem is mounted under /sys/fs/cgroup")
    elif not os.access(cgroups.hierarchies()[0], os.W_OK):
        found.append(f"{cgroups.hierarchies()[0]} is read-only: the node needs writable cgroups")
    return found


def _cni_dir() -> str | None:
    for directory in CNI_DIRS:
        if all(os.access(Path(directory) / plugin, os.X_OK) for plugin in CNI_PLUGINS):
            return directory
    return None


def host() -> Host:
    """The tools found (call after ``problems()`` came back empty)."""
    runc = shutil.which("runc", path=_search_path())
    cni = _cni_dir()
    if runc is None or cni is None:
        raise RuntimeError("preflight.host() before preflight.problems() came back empty")
    return Host(runc=runc, cni_bin_dir=cni)
