"""A pod with transparent capture, made of real processes in test namespaces.

``World`` owns a ``tests.netns.Link`` (the pod's network namespace and a peer
namespace with the servers) and ``tests.kubelet.Pod``s whose containers join
the pod's network. The pod is rendered by the injector (``rendered``) from the
annotations a test gives, and its containers run as rendered, the way a
kubelet runs them: the capture init container (user 0, only NET_ADMIN and
NET_RAW), ``sidecar proxy`` (user 1337, no capabilities); app processes run as
user 1000. ``close()`` stops every process and drops both namespaces, and with
them every interface and rule they held.
"""

from __future__ import annotations

import http.client
import json
import select
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contract.layout import CAPTURE_INIT_CONTAINER as CAPTURE_INIT
from contract.layout import PROXY_CONTAINER as PROXY
from injector.core.model import NamespaceInfo
from injector.core.render import render
from injector.core.settings import Settings
from sidecar.proxy.admin import parse_stats
from tests import kubelet
from tests.netns import POD_V4, Link
from tests.proxy.harness import metric
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
APP_UID = 1000
AGENT = ("127.0.0.1", 15020)
ADMIN = ("127.0.0.1", 15000)

PREFIX = "sidecar.example.io/"
# What a kubelet resolves in the rendered env (downward API).
FIELD_REFS = {"limits.cpu": "1", "metadata.namespace": "shop", "status.podIPs": POD_V4}


def rendered(annotations: Mapping[str, str]) -> dict[str, Any]:
    """The pod spec the injector renders for an app on port 8080 with
    ``annotations`` (``inject`` and native sidecars implied)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "shop",
            "annotations": {
                PREFIX + "inject": "true",
                PREFIX + "native-sidecars": "true",
                **{PREFIX + k: v for k, v in annotations.items()},
            },
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "example/app:1",
                    "ports": [{"containerPort": 8080}],
                    "securityContext": {"runAsUser": APP_UID},
                }
            ]
        },
    }
    # No operator here to sign mesh certificates: the pod runs without mesh mTLS.
    result = render(pod, NamespaceInfo("shop"), Settings(mesh_signer=None))
    return dict(result.pod["spec"])


def container(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    everything = [*spec.get("initContainers", []), *spec["containers"]]
    return dict(next(c for c in everything if c["name"] == name))


def http_get(address: tuple[str, int], path: str, timeout: float = 5.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


class World:
    def __init__(
        self, tmp: Path, *, app_hosts: str | None = None, proxy_hosts: str | None = None
    ) -> None:
        """``app_hosts`` / ``proxy_hosts``: the /etc/hosts of the app containers
        and of the proxy (a name only the proxy sees can only be reached if the
        proxy resolves it). No DNS server otherwise."""
        self.tmp = tmp
        self.link = Link()
        no_dns = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
        self.pod = kubelet.Pod(
            tmp / "pod", netns=self.link.pod.path, etc_hosts=app_hosts, resolv_conf=no_dns
        )
        self.proxy_pod = kubelet.Pod(
            tmp / "proxy", netns=self.link.pod.path, etc_hosts=proxy_hosts, resolv_conf=no_dns
        )
        self.proxy: subprocess.Popen[bytes] | None = None

    def close(self) -> None:
        try:
            self.link.close()
        finally:
            self.pod.cleanup()
            self.proxy_pod.cleanup()

    # -- containers -------------------------------------------------------

    def run_init(
        self,
        annotations: Mapping[str, str] | None = None,
        init: Mapping[str, Any] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the capture init container the injector renders for ``annotations``
        (or ``init`` as given) to completion, as a kubelet would."""
        spec = init or container(
            rendered({"proxy-capture": "iptables", **(annotations or {})}), CAPTURE_INIT
        )
        proc = self.link.pod.adopt(
            self.pod.start_container(spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())

    def start_proxy(
        self, annotations: Mapping[str, str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Run the proxy container the injector renders for ``annotations``, as a
        kubelet would; ``env``: variables a test adds (a short drain)."""
        spec = container(rendered(annotations), PROXY)
        extra = {"SIDECAR_DRAIN_GRACE": "0s", **(env or {})}
        spec["env"] = [*spec["env"], *({"name": k, "value": v} for k, v in extra.items())]
        with (
            (self.tmp / "proxy.stdout").open("wb") as out,
            (self.tmp / "proxy.stderr").open("wb") as err,
        ):
            self.proxy = self.link.pod.adopt(
                self.proxy_pod.start_container(spec, field_refs=FIELD_REFS, stdout=out, stderr=err)
            )

        proxy = self.proxy
        wait_for(
            lambda: proxy.poll() is not None or self.link.pod.call(_status, AGENT, "/ready") == 200,
            timeout=60,
            what="the proxy to be ready in the pod",
        )
        if proxy.poll() is not None:
            raise AssertionError(f"proxy exited {proxy.returncode}: {self.proxy_log()}")
        return proxy

    def start_app(self, port: int) -> None:
        """An HTTP server (``/echo``, ...) on 0.0.0.0:PORT in the pod, as the app."""
        proc = self.link.pod.adopt(
            self.pod.start(
                [sys.executable, "-m", "tests.capture.servers", f"http=0.0.0.0:{port}"],
                user=APP_UID,
                group=APP_UID,
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
        )
        _wait_ready(proc, "the app server")

    def start_servers(self, specs: Sequence[str]) -> None:
        """Servers in the peer namespace (see ``tests.capture.servers``)."""
        proc = self.link.peer.start(
            [sys.executable, "-m", "tests.capture.servers", *specs],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        _wait_ready(proc, "the servers")

    def client(
        self,
        *targets: str,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[kubelet.Mount] = (),
    ) -> list[dict[str, Any]]:
        """Run the unchanged app client in the pod as user 1000; its results."""
        return results(self.start_client(*targets, env=env, mounts=mounts))

    def start_client(
        self,
        *targets: str,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[kubelet.Mount] = (),
    ) -> subprocess.Popen[bytes]:
        """The same client, running; ``results(proc)`` waits for what it got."""
        return self.link.pod.adopt(
            self.pod.start(
                [sys.executable, "-m", "tests.capture.client", *targets],
                user=APP_UID,
                group=APP_UID,
                env=dict(env or {}),
                mounts=mounts,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
            )
        )

    def peer_get(self, url: str) -> int:
        """A GET from the peer namespace, outside the pod; the status."""
        code = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).status)"
        return int(self.link.peer.run([sys.executable, "-c", code, url]).stdout)

    # -- looking inside ---------------------------------------------------

    def metrics(self) -> str:
        status, body = self.link.pod.call(http_get, AGENT, "/metrics")
        assert status == 200
        return body

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.metrics(), name, **labels)

    def stat(self, name: str) -> int:
        status, body = self.link.pod.call(http_get, ADMIN, f"/stats?filter=^{name}$")
        assert status == 200
        return parse_stats(body).get(name, 0)

    def save(self, version: int = 4) -> str:
        tool = "iptables-save" if version == 4 else "ip6tables-save"
        result = self.link.pod.run([tool, "-t", "nat"])
        return "\n".join(line for line in result.stdout.splitlines() if not line.startswith("#"))

    def proxy_log(self) -> str:
        path = self.tmp / "proxy.stderr"
        return path.read_text() if path.exists() else ""

    def access_log(self) -> list[dict[str, Any]]:
        path = self.tmp / "proxy.stdout"
        text = path.read_text() if path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def results(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


def _status(address: tuple[str, int], path: str) -> int:
    try:
        return http_get(address, path, timeout=1.0)[0]
    except OSError:
        return 0


def _wait_ready(proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().decode().strip() if readable else "(nothing)"
    if line != "ready":
        proc.wait(5)
        raise AssertionError(f"{what} did not start (exit {proc.returncode}): {line!r}")
