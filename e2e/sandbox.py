"""The local cluster with a real node, isolated from the host.

``Sandbox.start`` checks the machine (``e2e.preflight``), builds or finds
the binaries (``e2e.node_build``) and images (``e2e.images``, in parallel
with the Go builds), then starts ``e2e.holder`` through util-linux::

    unshare --pid --fork --kill-child --mount-proc --net --mount --uts \
            --propagation private python -m e2e.holder STATE/plan.json

etcd, kube-apiserver, containerd, kubelet, kube-proxy, the controllers, every
pod, mount, link, iptables rule and network sysctl live in those namespaces,
and die with them: when the holder exits, or when the supervisor is
SIGKILLed (``unshare`` gets SIGKILL from PDEATHSIG, the holder from
``--kill-child``, the rest from the kernel). Only kubelet's cgroup tree is
visible outside; ``stop`` removes it, and the next start removes those of
SIGKILLed runs (``remove_orphans``).

The API server listens on 127.0.0.1:PORT inside; the holder also serves
127.0.0.1:PORT of the host (a socket this process binds and passes in), so
the same kubeconfig works on both sides. ``enter(command)`` runs a command
in the sandbox's network namespace (the e2e suite: its local injector must be
reachable from the API server).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from e2e import cgroups, cluster, images, node_build, preflight, vault_image
from e2e.cluster import ClusterError, ClusterInfo

ROOT = Path(__file__).resolve().parent.parent
HOLDER_MODULE = "e2e.holder"
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
UNSHARE += ["--net", "--mount", "--uts", "--propagation", "private"]


def wanted(*, detached: bool) -> bool:
    """Should the cluster have a node? SIDECAR_E2E_NODE=1 or 0; by default
    ``run`` (make test) starts one when root, ``up`` (a control plane to work
    against, e.g. with a dev Vault) does not."""
    setting = os.environ.get("SIDECAR_E2E_NODE", "auto")
    if setting in ("0", "1"):
        return setting == "1"
    return not detached and os.geteuid() == 0


def prepare() -> tuple[dict[str, Path], list[Path]]:
    """Binaries and image archives for a node: Go builds and image builds overlap."""
    problems = preflight.problems()
    if problems:
        raise ClusterError("the e2e node cannot start here:\n- " + "\n- ".join(problems))
    with ThreadPoolExecutor(max_workers=1) as pool:
        project = pool.submit(images.project_archives)
        binaries = node_build.ensure()
        archives = [*images.infra_archives(binaries), vault_image.archive(), *project.result()]
    return binaries, archives


def live_holders() -> dict[int, Path]:
    """pid -> plan of every running holder on this machine."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if HOLDER_MODULE.encode() in argv and argv[-2:-1]:
            found[int(entry.name)] = Path(argv[-2].decode())
    return found


def cgroup_root(state_dir: Path) -> str:
    """kubelet's cgroupRoot for the sandbox of state_dir (derived, so that a
    holder's command line alone tells which tree is still in use)."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return f"/{cgroups.PREFIX}{digest}"


def remove_orphans() -> None:
    """cgroup trees of sandboxes whose holder is gone (SIGKILLed runs): their
    processes died with the holder; a tree that still has some is left alone."""
    live = [cgroup_root(plan.parent) for plan in live_holders().values()]
    for root in cgroups.orphans(live):
        try:
            cgroups.remove(root, timeout=5)
        except cgroups.CgroupError as exc:
            cluster._say(f"left {root} in place: {exc}")


class Sandbox:
    def __init__(self, state_dir: Path, *, detach: bool) -> None:
        self.state_dir = state_dir.resolve()
        self.detach = detach
        self.process: subprocess.Popen[bytes] | None = None
        self.binaries: dict[str, Path] = {}
        self.archives: list[Path] = []
        self.cgroup_root = cgroup_root(self.state_dir)

    @property
    def log(self) -> Path:
        return self.state_dir / "holder.log"

    def prepare(self) -> None:
        """Check the machine, build or find binaries and images (timed apart from start-up)."""
        self.binaries, self.archives = prepare()

    def start(self) -> ClusterInfo:
        if not self.binaries:
            self.prepare()
        host = preflight.host()
        remove_orphans()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        plan = {
            "state_dir": str(self.state_dir),
            "api_port": listener.getsockname()[1],
            "forward_fd": listener.fileno(),
            "cgroup_root": self.cgroup_root,
            "runc": host.runc,
            "cni_bin_dir": host.cni_bin_dir,
            "binaries": {name: str(path) for name, path in self.binaries.items()},
            "archives": [str(path) for path in self.archives],
        }
        plan_path = self.state_dir / "plan.json"
        plan_path.write_text(json.dumps(plan, indent=2))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*UNSHARE, sys.executable, "-m", HOLDER_MODULE, str(plan_path)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=[listener.fileno()],
                start_new_session=True,
                preexec_fn=None if self.detach else cluster._die_with_parent,  # noqa: PLW1509
            )
        listener.close()
        self._wait_ready()
        info = ClusterInfo.load(self.state_dir / "cluster.json")
        info = ClusterInfo(**{**info.__dict__, "pids": {"sandbox": self.process.pid}})
        info.save()
        return info

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 4 * cluster.STARTUP_TIMEOUT
        while not (self.state_dir / "ready").exists():
            failed = self.state_dir / "failed"
            if failed.exists():
                raise ClusterError(failed.read_text())
            if self.process.poll() is not None:
                raise ClusterError(
                    f"the sandbox exited with {self.process.returncode} before it was ready; "
                    f"last lines of {self.log}:\n{cluster._log_tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"the sandbox was not ready after {deadline:.0f}s; last lines of "
                    f"{self.log}:\n{cluster._log_tail(self.log)}"
                )
            time.sleep(0.1)

    def enter(self, command: list[str]) -> list[str]:
        """command, run in the sandbox's network namespace."""
        assert self.process is not None
        return enter(self.process.pid, command)

    def stop(self, *, remove: bool = True) -> None:
        if self.process is not None:
            stop_holder(self.process.pid)
            self.process.wait()
        cgroups.remove(self.cgroup_root)
        if remove:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def _holder(unshare_pid: int) -> int | None:
    try:
        children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def enter(unshare_pid: int, command: list[str]) -> list[str]:
    """command, run in the network namespace of the sandbox unshare_pid started."""
    holder = _holder(unshare_pid)
    if holder is None:
        raise ClusterError("the sandbox's holder process is gone")
    return ["nsenter", f"--net=/proc/{holder}/ns/net", "--", *command]


def stop_state(state_dir: Path, info: ClusterInfo) -> bool:
    """Stop the sandbox recorded in state_dir, remove its cgroups and the directory."""
    pid = info.pids.get("sandbox", 0)
    found = bool(pid) and cluster._alive(pid) and cluster._owned_by(pid, state_dir)
    if found:
        stop_holder(pid)
    cgroups.remove(cgroup_root(state_dir))
    shutil.rmtree(state_dir, ignore_errors=True)
    return found


def stop_holder(unshare_pid: int, timeout: float = 20) -> None:
    """SIGTERM the holder (it stops its processes), SIGKILL unshare after timeout
    (the holder and every process of the PID namespace die with it)."""
    holder = _holder(unshare_pid)
    if holder is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while cluster._alive(unshare_pid):
        if time.monotonic() > deadline:
            os.kill(unshare_pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.1)
