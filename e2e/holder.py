"""PID 1 of the sandbox: ``python -m e2e.holder PLAN.json`` (started by e2e.sandbox).

Runs in new PID, network, mount and UTS namespaces (util-linux ``unshare``
with ``--kill-child``: if the supervisor dies, this process is SIGKILLed, and
with it, by the kernel, every process of the PID namespace). Before starting
anything it makes the namespaces its own:

- mounts (private propagation, invisible on the host): the sandbox's own
  directories over /var/lib, /var/log and /run, so kubelet's hard-coded
  paths (/var/lib/kubelet, /var/log/containers, /var/log/pods), libcni's
  caches (/var/lib/cni) and containerd's defaults land in the state
  directory; regular files over the kernel tunables kubelet sets
  (vm.overcommit_memory, kernel.panic, ...), so the host's values stay;
- network: loopback up, the node's address and a default route on it; the CNI bridge, pod
  links and kube-proxy's and kubelet's iptables rules all live here;
- hostname: the node's name.

Then it starts the control plane (etcd + kube-apiserver on every address of
this network namespace), the node (``e2e.node``), forwards the API server to
127.0.0.1 of the host's network namespace through the listening socket the
supervisor passed in, writes ``ready`` (or ``failed`` with the cause) in
the state directory, reaps orphans (it is PID 1) and waits for SIGTERM; then,
as nothing in here needs a graceful end, it SIGKILLs every process of its
namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from e2e import cluster, node, node_config

# Kernel tunables kubelet sets when they differ (protectKernelDefaults: false).
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
PRIVATE_DIRS = ("/var/lib", "/var/log", "/run")


@dataclass(frozen=True)
class Plan:
    """What the supervisor asks for (``plan.json`` in the state directory)."""

    state_dir: str
    api_port: int
    forward_fd: int
    cgroup_root: str
    runc: str
    cni_bin_dir: str
    binaries: dict[str, str]
    archives: list[str]

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls(**json.loads(path.read_text()))


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise cluster.ClusterError(
            f"`{' '.join(command)}` failed in the sandbox: {result.stderr.strip()}"
        )


def _isolate_files(state: Path) -> None:
    for target in PRIVATE_DIRS:
        source = state / "root" / target.strip("/").replace("/", "-")
        source.mkdir(parents=True, exist_ok=True)
        _run("mount", "--bind", str(source), target)
    tunables = state / "sysctl"
    tunables.mkdir(exist_ok=True)
    for name in KUBELET_SYSCTLS:
        proc = Path("/proc/sys") / name
        if not proc.exists():
            continue
        stand_in = tunables / name.replace("/", ".")
        stand_in.write_text(proc.read_text())
        _run("mount", "--bind", str(stand_in), str(proc))


def _isolate_network() -> None:
    _run("ip", "link", "set", "lo", "up")
    _run("ip", "address", "add", f"{node_config.NODE_IP}/32", "dev", "lo")
    # Connections this namespace makes to Service IPs (the API server calling a
    # webhook) need a route before kube-proxy's OUTPUT rules send them to a pod.
    _run("ip", "route", "add", "default", "dev", "lo", "src", node_config.NODE_IP)
    socket.sethostname(node_config.NODE_NAME)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def _forward(listener: socket.socket, port: int) -> None:
    """Accept on the host's 127.0.0.1:port, connect to this namespace's."""
    while True:
        try:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            continue
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


class Holder:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.state = Path(plan.state_dir)
        self.stopping = threading.Event()
        self.plane: cluster.ControlPlane | None = None
        self.node: node.Node | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping.set()

    def start(self) -> None:
        _isolate_files(self.state)
        _isolate_network()
        listen = cluster.Listen(
            bind="0.0.0.0",
            port=self.plan.api_port,
            advertise=node_config.NODE_IP,
            node_name=node_config.NODE_NAME,
        )
        self.plane = cluster.ControlPlane(self.state, detach=False, listen=listen)
        info = self.plane.start()
        listener = socket.socket(fileno=self.plan.forward_fd)
        threading.Thread(target=_forward, args=(listener, self.plan.api_port), daemon=True).start()
        layout = node_config.Layout(
            root=self.state / "node",
            cgroup_root=self.plan.cgroup_root,
            runc=self.plan.runc,
            cni_bin_dir=self.plan.cni_bin_dir,
        )
        binaries = {name: Path(path) for name, path in self.plan.binaries.items()}
        self.node = node.Node(layout, binaries, [Path(a) for a in self.plan.archives], info)
        self.node.start()

    def processes(self) -> list[subprocess.Popen[bytes]]:
        found = list(self.plane.processes.values()) if self.plane else []
        return found + (self.node.processes() if self.node else [])

    def reap(self) -> None:
        """PID 1 adopts orphans (containerd shims): reap those; ours stay Popen's."""
        ours = {p.pid for p in self.processes() if p.returncode is None}
        for process in self.processes():
            process.poll()
        while True:
            try:
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if found is None or found.si_pid in ours:
                return
            os.waitpid(found.si_pid, 0)

    def wait(self) -> None:
        while not self.stopping.wait(0.5):
            self.reap()

    def stop(self) -> None:
        """Nothing in here needs a graceful end (all state is thrown away): as PID 1,
        SIGKILL every other process of the namespace, and reap them."""
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return
        while True:
            try:
                os.wait()
            except ChildProcessError:
                return


def main(argv: list[str]) -> int:
    plan = Plan.load(Path(argv[0]))
    holder = Holder(plan)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, holder._on_signal)
    try:
        holder.start()
    except Exception as exc:
        message = str(exc) if isinstance(exc, cluster.ClusterError) else repr(exc)
        (holder.state / "failed").write_text(message)
        print(f"e2e.holder: {message}", file=sys.stderr, flush=True)
        holder.stop()
        return 1
    (holder.state / "ready").write_text("")
    holder.wait()
    holder.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
