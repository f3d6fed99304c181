"""The e2e node's configuration files: pure functions of its layout.

Everything runs inside the sandbox's own network and mount namespaces
(``e2e.holder``), where /var/lib, /var/log and /run are the sandbox's own
directories: containerd, kubelet, CNI and kube-proxy keep their default
paths and still write nothing on the host. Addresses are private to the
sandbox's network namespace, so they are fixed: the node is 10.99.0.1 (an
address on its loopback device), pods get 10.244.0.0/24 on the bridge
``cni0``, Services 10.0.0.0/24 (the API server's range), cluster DNS 10.0.0.10.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NODE_NAME = "e2e-node"
NODE_IP = "10.99.0.1"
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
DNS_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
SANDBOX_IMAGE = "localhost/sidecar-e2e/pause:3.10"
COREDNS_IMAGE = "localhost/sidecar-e2e/coredns:e2e"


@dataclass(frozen=True)
class Layout:
    """Where the node's own files live (a directory of the sandbox's state)."""

    root: Path
    cgroup_root: str  # kubelet's cgroupRoot, unique per sandbox: /sidecar-e2e-<id>
    runc: str
    cni_bin_dir: str

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.etc / "cni"

    def logs(self, name: str) -> Path:
        return self.root / f"{name}.log"


def containerd_toml(layout: Layout) -> str:
    """containerd 2.x (config version 3): cgroupfs, Debian's runc, the local pause image."""
    return f"""version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
imports = []
# NRI would listen on /var/run/nri; nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{SANDBOX_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  # Without CAP_SYS_RESOURCE runc cannot give the pause container a negative
  # oom_score_adj ("can't get final child's PID from pipe: EOF"): clamp it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{layout.runc}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{layout.cni_bin_dir}"]
    conf_dir = "{layout.cni_conf_dir}"
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_conflist() -> str:
    """A bridge with the node as gateway; Service traffic is masqueraded by kube-proxy."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "e2e",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                }
            ],
        },
        indent=2,
    )


def kubelet_config(layout: Layout, ca_file: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        # No systemd here; cgroup v1 (or hybrid) hosts need failCgroupV1: false.
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup_root,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failCgroupV1": False,
        "failSwapOn": False,
        "address": "0.0.0.0",
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        # The API server calls it with the admin certificate (logs, exec).
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": ca_file},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [DNS_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(layout.etc / "resolv.conf"),
        # Its kernel tunables land in the sandbox's stand-in files (e2e.holder).
        "protectKernelDefaults": False,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        # Images come from local archives and cannot be pulled again: no image GC.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 110,
        "shutdownGracePeriod": "0s",
        "logging": {"format": "text"},
    }


def kube_proxy_config(kubeconfig: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig},
        "mode": "iptables",
        "clusterCIDR": CLUSTER_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "oomScoreAdj": 0,
        # Leave the kernel's conntrack table size and timeouts alone (global).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # Pod -> Service -> pod on the same bridge: the reply must come back
        # through the node for the DNAT to be undone.
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
    }


def write_all(layout: Layout, kubeconfig: str, ca_file: str) -> dict[str, Path]:
    """Write every configuration file; returns their paths by name."""
    layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "containerd": (layout.etc / "containerd.toml", containerd_toml(layout)),
        "cni": (layout.cni_conf_dir / "10-e2e.conflist", cni_conflist()),
        "kubelet": (layout.etc / "kubelet.yaml", yaml.safe_dump(kubelet_config(layout, ca_file))),
        "kube-proxy": (
            layout.etc / "kube-proxy.yaml",
            yaml.safe_dump(kube_proxy_config(kubeconfig)),
        ),
        # Pods with dnsPolicy Default (CoreDNS itself): no upstream resolver
        # exists inside the sandbox.
        "resolv.conf": (layout.etc / "resolv.conf", "options ndots:1\n"),
    }
    for path, text in files.values():
        path.write_text(text)
    return {name: path for name, (path, _) in files.items()}
