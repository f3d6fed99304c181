"""The e2e node's cgroup root: created before kubelet starts, removed after.

cgroup hierarchies are the one thing namespaces do not make private: the
directories kubelet and runc create are visible on the host. Every sandbox
therefore gives kubelet its own ``cgroupRoot`` (``/sidecar-e2e-<id>``) in
every mounted hierarchy (cgroup v1 controllers, the v2 ``unified`` one),
so two nodes on one machine never touch each other's pods, and removes the
whole tree once the sandbox's processes are gone. ``orphans`` finds the
roots of sandboxes that were SIGKILLed (no live ``e2e.holder`` names them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

PREFIX = "sidecar-e2e-"


class CgroupError(RuntimeError):
    """A cgroup tree could not be created or removed; names the directory."""


def hierarchies() -> list[Path]:
    """Mount points of the cgroup (v1) and cgroup2 filesystems."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            found.append(Path(fields[4]))
    return found


def _relative(root: str) -> str:
    name = root.strip("/")
    if not name.startswith(PREFIX) or "/" in name:
        raise CgroupError(f"cgroup root {root!r}: expected /{PREFIX}<id>")
    return name


def create(root: str) -> None:
    """mkdir root in every hierarchy (cpuset: with its parent's CPUs and memory nodes)."""
    name = _relative(root)
    for hierarchy in hierarchies():
        path = hierarchy / name
        try:
            path.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (path / knob).exists() and not (path / knob).read_text().strip():
                    (path / knob).write_text((hierarchy / knob).read_text())
        except OSError as exc:
            raise CgroupError(
                f"cannot create cgroup {path}: {exc}; the node needs root and a writable "
                "/sys/fs/cgroup"
            ) from exc


def _tree(top: Path) -> list[Path]:
    """Every directory under top, deepest first."""
    found = [Path(dirpath) for dirpath, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _has_tasks(top: Path) -> bool:
    for directory in _tree(top):
        try:
            if (directory / "cgroup.procs").read_text().strip():
                return True
        except OSError:
            continue
    return False


def remove(root: str, timeout: float = 30) -> None:
    """Remove root's tree from every hierarchy, once its processes are gone."""
    name = _relative(root)
    tops = [h / name for h in hierarchies() if (h / name).exists()]
    deadline = time.monotonic() + timeout
    while any(_has_tasks(top) for top in tops):
        if time.monotonic() > deadline:
            busy = [str(top) for top in tops if _has_tasks(top)]
            raise CgroupError(f"processes still run in {', '.join(busy)} after {timeout:.0f}s")
        time.sleep(0.1)
    for top in tops:
        for directory in _tree(top):
            try:
                directory.rmdir()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise CgroupError(f"cannot remove cgroup {directory}: {exc}") from exc


def roots() -> set[str]:
    """Every sandbox cgroup root present in any hierarchy."""
    return {
        f"/{entry.name}"
        for hierarchy in hierarchies()
        if hierarchy.is_dir()
        for entry in hierarchy.iterdir()
        if entry.name.startswith(PREFIX) and entry.is_dir()
    }


def orphans(live: Iterable[str]) -> set[str]:
    return roots() - set(live)
