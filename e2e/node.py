"""One Kubernetes node next to the local control plane, inside the sandbox.

containerd (Debian's runc, CNI bridge) + kubelet + kube-proxy (iptables
mode), with kube-controller-manager and kube-scheduler, so that Deployments,
Jobs, Services and the ``kube-root-ca.crt`` ConfigMap behave as in any
cluster; then cluster DNS (``e2e.addons``). Runs in ``e2e.holder``'s
namespaces, configured by ``e2e.node_config``; the images come from local
archives (``ctr images import``), never from a registry.

A component that does not come up raises ``ClusterError`` naming the
component, its log and, for the failures met on these machines, the cause
and the fix (``HINTS``).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from e2e import addons, cgroups, cluster, node_config
from e2e.cluster import Api, ClusterError, ClusterInfo

STARTUP_TIMEOUT = cluster.STARTUP_TIMEOUT

# (a log line, what it means and what to do): failures met on these machines.
HINTS: tuple[tuple[str, str], ...] = (
    (
        r"can't get final child's PID from pipe|oom_score_adj: permission denied",
        "runc cannot lower a container's oom_score_adj without CAP_SYS_RESOURCE; the "
        "containerd configuration must keep restrict_oom_score_adj = true",
    ),
    (
        r'exec: "?runc"?: executable file not found|runc: no such file',
        "runc is missing: apt-get install runc",
    ),
    (
        r'failed to find plugin "\w+"|cni plugin not initialized',
        "the CNI plugins are missing or unusable: apt-get install containernetworking-plugins",
    ),
    (
        r'"iptables(-restore)?": executable file not found|iptables.*not found',
        "iptables is missing: apt-get install iptables",
    ),
    (
        r"cgroups in hybrid mode not supported",
        "crun refuses this host's hybrid cgroups: use runc (apt-get install runc)",
    ),
    (
        r"failed to mount overlay|overlayfs.*not supported|snapshotter.*overlayfs.*skip",
        "the kernel offers no overlayfs for containerd's snapshotter on this filesystem",
    ),
    (
        r"address already in use",
        "a port the component needs is taken (its log names it); inside the sandbox "
        "only this cluster listens, so another process of this cluster holds it",
    ),
    (
        r"cgroup-root .* doesn't exist|failed to initialize top level QOS containers",
        "kubelet cannot use its cgroup root: is /sys/fs/cgroup writable (root, not in a "
        "container that hides the cgroup hierarchies)?",
    ),
)


def hint(log_text: str) -> str:
    causes = [cause for pattern, cause in HINTS if re.search(pattern, log_text, re.I)]
    return "; ".join(dict.fromkeys(causes))


def _explain(error: ClusterError, log: Path) -> ClusterError:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = ""
    cause = hint(text[-200_000:])
    return ClusterError(f"{error}\nlikely cause: {cause}" if cause else str(error))


class Node:
    """containerd, kubelet, kube-proxy, kube-controller-manager, kube-scheduler."""

    def __init__(
        self,
        layout: node_config.Layout,
        binaries: dict[str, Path],
        archives: list[Path],
        info: ClusterInfo,
    ) -> None:
        self.layout = layout
        self.binaries = binaries
        self.archives = archives
        self.info = info
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return list(self.running.values())

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        path = ":".join([str(self.binaries["containerd"].parent), os.environ.get("PATH", "")])
        process = cluster._spawn(
            command,
            self.layout.logs(name),
            detach=False,
            env=dict(os.environ, PATH=path),
        )
        self.running[name] = process
        return process

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.binaries["ctr"]), "--address", node_config.CONTAINERD_SOCKET]
        return subprocess.run(
            [*command, "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def _wait(self, name: str, check: Callable[[], bool], what: str) -> None:
        log = self.layout.logs(name)
        try:
            cluster._poll(check, what, self.running[name], log)
        except ClusterError as exc:
            raise _explain(exc, log) from None

    def start(self) -> None:
        started = time.monotonic()
        self.layout.root.mkdir(parents=True, exist_ok=True)
        files = node_config.write_all(self.layout, self.info.kubeconfig, self.info.ca_file)
        cgroups.create(self.layout.cgroup_root)
        self._start_containerd(files["containerd"])
        # Images go in while the rest starts (one at a time: they share layers).
        with ThreadPoolExecutor(max_workers=1) as pool:
            imported = pool.submit(self._import_images)
            self._start_kubelet(files["kubelet"])
            self._start_controllers(files["kube-proxy"])
            self._wait_node_ready()
            addons.install_dns(self.info)
            imported.result()
        self._wait_dns_ready()
        cluster._say(f"node {node_config.NODE_NAME} ready in {time.monotonic() - started:.1f}s")

    def _start_containerd(self, config: Path) -> None:
        self._spawn("containerd", [str(self.binaries["containerd"]), "--config", str(config)])
        self._wait(
            "containerd",
            lambda: self._ctr("version").returncode == 0,
            f"containerd on {node_config.CONTAINERD_SOCKET}",
        )

    def _import_images(self) -> None:
        started = time.monotonic()
        for archive in self.archives:
            result = self._ctr("images", "import", str(archive))
            if result.returncode != 0:
                raise ClusterError(f"`ctr images import {archive}` failed: {result.stderr.strip()}")
        cluster._say(f"{len(self.archives)} images imported in {time.monotonic() - started:.1f}s")

    def _start_kubelet(self, config: Path) -> None:
        self._spawn(
            "kubelet",
            [
                str(self.binaries["kubelet"]),
                f"--config={config}",
                f"--kubeconfig={self.info.kubeconfig}",
                f"--hostname-override={node_config.NODE_NAME}",
                f"--node-ip={node_config.NODE_IP}",
                "--v=1",
            ],
        )

    def _start_controllers(self, proxy_config: Path) -> None:
        kubeconfig = self.info.kubeconfig
        pki = Path(self.info.ca_file).parent
        self._spawn(
            "kube-proxy", [str(self.binaries["kube-proxy"]), f"--config={proxy_config}", "--v=1"]
        )
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries["kube-controller-manager"]),
                f"--kubeconfig={kubeconfig}",
                f"--root-ca-file={self.info.ca_file}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries["kube-scheduler"]),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
        )

    def _alive_or_raise(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                log = self.layout.logs(name)
                raise _explain(
                    ClusterError(
                        f"{name} exited with {process.returncode}; last lines of {log}:\n"
                        f"{cluster._log_tail(log)}"
                    ),
                    log,
                )

    def _wait_for(self, check: Callable[[], bool], what: str, log_name: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            self._alive_or_raise()
            if check():
                return
            time.sleep(0.2)
        log = self.layout.logs(log_name)
        raise _explain(
            ClusterError(
                f"{what} not after {STARTUP_TIMEOUT:.0f}s; last lines of {log}:\n"
                f"{cluster._log_tail(log)}"
            ),
            log,
        )

    def _wait_node_ready(self) -> None:
        api = Api(self.info)

        def ready() -> bool:
            status, body = api.get(f"/api/v1/nodes/{node_config.NODE_NAME}")
            conditions = body.get("status", {}).get("conditions", []) if status == 200 else []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait_for(ready, f"node {node_config.NODE_NAME} Ready", "kubelet")

    def _wait_dns_ready(self) -> None:
        api = Api(self.info)

        def available() -> bool:
            status, body = api.get(addons.DNS_DEPLOYMENT_PATH)
            return status == 200 and body.get("status", {}).get("availableReplicas", 0) >= 1

        self._wait_for(available, "cluster DNS (CoreDNS) available", "kubelet")
