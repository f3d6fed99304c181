"""Run processes the way a kubelet runs containers, without a container engine.

Each "container" is a real process started in a private mount namespace
(``unshare -m``) where:

* the root filesystem is remounted read-only (``readOnlyRootFilesystem``);
* only its volumes are writable: each volume is a host directory bind-mounted
  at the container's ``mountPath`` (read-only where ``readOnly: true``), shared
  by every container of the pod, created like a kubelet emptyDir: mode 0777,
  or group-owned by ``fsGroup`` with mode 2777 (setgid) when the pod has one;
* it runs as the securityContext's user and group (``setpriv``), with the
  pod's ``fsGroup`` as a supplementary group, no capabilities in any set but
  the bounding set's ``capabilities.add`` (which only user 0 gets in its
  effective set, as in a container without ambient capabilities) and
  ``no_new_privs`` (``allowPrivilegeEscalation: false``);
* its environment is exactly what the container spec says;
* with ``netns``, it joins that network namespace (``nsenter --net``: the
  pod's network, shared by its containers); the pod's ``etc_hosts`` and
  ``resolv_conf`` (what the kubelet writes from ``hostAliases`` and the DNS
  policy) are bind-mounted over ``/etc/hosts`` and ``/etc/resolv.conf``.

Needs root (to create namespaces and mounts) and util-linux's ``unshare`` and
``setpriv``; ``available()`` says whether this machine can do it. The Python
interpreter must be reachable by an unprivileged user: where its prefix lies
under a directory others cannot traverse (e.g. ``/root`` mode 0700), the
namespace gets a traversable view of just that path.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIDECAR_IMAGE_COMMAND = [sys.executable, "-m", "sidecar"]


def available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root to create mount namespaces"
    for tool in ("unshare", "setpriv"):
        if shutil.which(tool) is None:
            return False, f"needs util-linux's {tool}"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return False, f"unshare -m failed: {probe.stderr.decode().strip()}"
    return True, ""


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool = False


@dataclass
class Pod:
    """A pod's worth of shared volumes; ``start`` runs one container in it."""

    root: Path
    fs_group: int | None = None
    netns: str | None = None  # /proc/PID/ns/net of the pod's network namespace
    etc_hosts: str | None = None
    resolv_conf: str | None = None
    volumes: dict[str, Path] = field(default_factory=dict)
    created: list[Path] = field(default_factory=list)

    def __enter__(self) -> Pod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Remove the (empty) host mount points this pod had to create."""
        for path in reversed(self.created):
            try:
                path.rmdir()
            except OSError:
                continue
        self.created.clear()

    def _mountpoint(self, path: str) -> None:
        missing = [p for p in [Path(path), *Path(path).parents] if not p.exists()]
        for directory in reversed(missing):
            directory.mkdir()
            self.created.append(directory)

    def volume(self, name: str) -> Path:
        """The host directory of emptyDir volume ``name``, created on first use."""
        if name not in self.volumes:
            path = self.root / "volumes" / name
            path.mkdir(parents=True)
            if self.fs_group is not None:
                os.chown(path, 0, self.fs_group)
                path.chmod(0o2777)
            else:
                path.chmod(0o777)
            self.volumes[name] = path
        return self.volumes[name]

    def start(
        self,
        argv: Sequence[str],
        *,
        user: int,
        group: int,
        mounts: Sequence[Mount] = (),
        env: Mapping[str, str] | None = None,
        read_only_root: bool = True,
        capabilities: Sequence[str] = (),
        **popen: Any,
    ) -> subprocess.Popen[bytes]:
        script = self._script(argv, user, group, mounts, env or {}, read_only_root, capabilities)
        command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
        if self.netns is not None:
            command = ["nsenter", f"--net={self.netns}", "--", *command]
        return subprocess.Popen(command, start_new_session=True, **popen)

    def run(
        self, argv: Sequence[str], *, timeout: float = 60.0, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        proc = self.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())

    def start_container(
        self,
        container: Mapping[str, Any],
        *,
        field_refs: Mapping[str, str] | None = None,
        **popen: Any,
    ) -> subprocess.Popen[bytes]:
        """Run a rendered container spec: its command (the sidecar image's
        ``sidecar`` entrypoint becomes this interpreter's ``-m sidecar``), env
        (``valueFrom`` resolved from ``field_refs`` by fieldPath or resource),
        volumeMounts and securityContext."""
        sc = container.get("securityContext", {})
        user = int(sc["runAsUser"])
        group = int(sc.get("runAsGroup", user))
        if not sc.get("readOnlyRootFilesystem"):
            raise AssertionError(f"{container['name']}: readOnlyRootFilesystem is not set")
        if user == 0 and sc.get("runAsNonRoot", False):
            raise AssertionError(f"{container['name']}: runAsUser 0 with runAsNonRoot")
        caps = sc.get("capabilities", {})
        if caps.get("drop") != ["ALL"] or sc.get("allowPrivilegeEscalation") is not False:
            raise AssertionError(f"{container['name']}: must drop ALL and not escalate")
        mounts = [
            Mount(m["name"], m["mountPath"], bool(m.get("readOnly", False)))
            for m in container.get("volumeMounts", [])
        ]
        return self.start(
            container_argv(container),
            user=user,
            group=group,
            mounts=mounts,
            env=container_env(container, field_refs or {}),
            capabilities=[str(c) for c in caps.get("add", [])],
            **popen,
        )

    def _script(
        self,
        argv: Sequence[str],
        user: int,
        group: int,
        mounts: Sequence[Mount],
        env: Mapping[str, str],
        read_only_root: bool,
        capabilities: Sequence[str],
    ) -> str:
        q = shlex.quote
        lines = ["set -e"]
        lines += _interpreter_view(self.root / "views")
        for name, content in (("hosts", self.etc_hosts), ("resolv.conf", self.resolv_conf)):
            if content is not None:
                managed = self.root / "etc" / name
                managed.parent.mkdir(exist_ok=True)
                managed.write_text(content)
                managed.chmod(0o644)
                lines.append(f"mount --bind {q(str(managed))} /etc/{name}")
        for mount in mounts:
            source = self.volume(mount.volume)
            self._mountpoint(mount.path)
            lines.append(f"mount --bind {q(str(source))} {q(mount.path)}")
            if mount.read_only:
                lines.append(f"mount -o remount,bind,ro {q(mount.path)}")
        if read_only_root:
            lines.append("mount -o remount,bind,ro /")
        groups = [str(group)] + ([str(self.fs_group)] if self.fs_group is not None else [])
        environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
        environment.update(env)
        bounding = "".join(f",+{c.lower()}" for c in capabilities)
        lines.append(
            "exec setpriv "
            f"--reuid={user} --regid={group} --groups={','.join(groups)} "
            f"--inh-caps=-all --bounding-set=-all{bounding} --no-new-privs -- "
            "env -i "
            + " ".join(q(f"{k}={v}") for k, v in environment.items())
            + " "
            + " ".join(q(a) for a in argv)
        )
        return "\n".join(lines)


def _interpreter_view(views: Path) -> list[str]:
    """Mount commands that make the interpreter's prefix traversable by any user."""
    lines: list[str] = []
    for prefix in {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}:
        for ancestor in reversed(prefix.parents):
            if ancestor == Path("/") or ancestor.stat().st_mode & 0o001:
                continue
            child = prefix.relative_to(ancestor).parts[0]
            view = views / ancestor.name
            (view / child).mkdir(parents=True, exist_ok=True)
            view.chmod(0o755)
            q = shlex.quote
            lines.append(f"mount --bind {q(str(ancestor / child))} {q(str(view / child))}")
            lines.append(f"mount --rbind {q(str(view))} {q(str(ancestor))}")
            break
    return lines


def container_argv(container: Mapping[str, Any]) -> list[str]:
    command = list(container.get("command", [])) + list(container.get("args", []))
    if command and command[0] == "sidecar":
        return [*SIDECAR_IMAGE_COMMAND, *command[1:]]
    return command


def container_env(container: Mapping[str, Any], field_refs: Mapping[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "valueFrom" in var:
            source = var["valueFrom"]
            key = (source.get("fieldRef") or {}).get("fieldPath") or (
                source.get("resourceFieldRef") or {}
            ).get("resource")
            if isinstance(key, str) and key in field_refs:
                env[var["name"]] = field_refs[key]
    return env
