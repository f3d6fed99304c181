"""The proxy role on a real node: traffic both ways, retries, rate limits, drain.

An uninjected ``echo`` pod (APP) behind Service ``echo`` is the upstream and
the client; ``web`` is injected with an outbound upstream and an inbound
port, behind Service ``web`` that targets the proxy's 15006.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

import pytest

from e2e import workloads
from e2e.conftest import Injector
from e2e.kube import Kube
from e2e.workloads import metric, request

pytestmark = pytest.mark.nodes


@dataclass(frozen=True)
class Mesh:
    namespace: str
    kubectl: str


@pytest.fixture
def mesh(kube: Kube, kubectl: str, namespace: str, injector: Injector) -> Mesh:
    """echo (uninjected) and web (proxy: outbound to echo, inbound to 8080), Ready."""
    web = workloads.pod(
        "web",
        {
            "inject": "true",
            "proxy-upstream": f"http://echo.{namespace}.svc:80",
            "proxy-inbound-port": "8080",
            "proxy-retries": "2",
            "proxy-rate-limit": "10/m",
        },
    )
    workloads.apply(
        kubectl,
        namespace,
        workloads.pod("echo", {"inject": "false"}),
        workloads.service("echo", 8080),
        web,
        workloads.service("web", 15006),
    )
    workloads.ready(kube, namespace, "echo")
    workloads.ready(kube, namespace, "web")
    # Both Services route before the tests start (web's costs one inbound request).
    workloads.routed(kubectl, namespace, "echo", f"http://web.{namespace}.svc:80/")
    workloads.routed(kubectl, namespace, "web", f"http://echo.{namespace}.svc:80/")
    return Mesh(namespace, kubectl)


def _metrics(mesh: Mesh) -> str:
    (result,) = request(
        mesh.kubectl, mesh.namespace, "web", "GET", "http://127.0.0.1:15020/metrics"
    )
    assert result["status"] == 200, result
    return str(result["body"])


def test_proxy_carries_traffic_both_ways(mesh: Mesh) -> None:
    # A client -> Service web -> the proxy's 15006 -> the app's 8080.
    (inbound,) = request(
        mesh.kubectl, mesh.namespace, "echo", "GET", f"http://web.{mesh.namespace}.svc/in"
    )
    assert inbound["status"] == 200, inbound
    body = json.loads(inbound["body"])
    assert body["host"] == "web"
    assert "x-request-id" in {key.lower() for key in body["headers"]}  # Envoy was on the path
    # The app -> 127.0.0.1:15001 -> Service echo -> the echo pod.
    (outbound,) = request(mesh.kubectl, mesh.namespace, "web", "GET", "http://127.0.0.1:15001/out")
    assert outbound["status"] == 200, outbound
    assert json.loads(outbound["body"])["host"] == "echo"
    metrics = _metrics(mesh)
    for cluster in ("inbound", "outbound"):
        assert metric(metrics, "envoy_cluster_upstream_rq_total", envoy_cluster_name=cluster) >= 1


def test_a_retry_and_a_rate_limited_429_show_in_the_proxy_metrics(mesh: Mesh) -> None:
    # echo answers 503 to its first /flaky call: the proxy retries, the app sees 200.
    (flaky,) = request(mesh.kubectl, mesh.namespace, "web", "GET", "http://127.0.0.1:15001/flaky")
    assert flaky["status"] == 200, flaky
    assert (
        metric(_metrics(mesh), "envoy_cluster_upstream_rq_retry", envoy_cluster_name="outbound")
        >= 1
    )
    # 30 requests against 10 a minute: the bucket runs dry, however slow this machine.
    burst = request(mesh.kubectl, mesh.namespace, "web", "GET", "http://127.0.0.1:15001/", 30)
    limited = [r for r in burst if r["status"] == 429]
    assert limited, [r["status"] for r in burst]
    assert all(r["headers"].get("x-sidecar-rate-limited") == "true" for r in limited)
    assert {r["status"] for r in burst} <= {200, 429}
    text = _metrics(mesh)
    rate_limited = [
        line for line in text.splitlines() if "rate_limited" in line and not line.startswith("#")
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in rate_limited) >= len(limited), rate_limited


def test_deleting_a_pod_lets_requests_in_flight_finish(
    kube: Kube, kubectl: str, namespace: str, injector: Injector
) -> None:
    grace = 60
    slow = workloads.pod(
        "slow",
        {"inject": "true", "proxy-inbound-port": "8080"},
        terminationGracePeriodSeconds=grace,
    )
    workloads.apply(
        kubectl,
        namespace,
        workloads.pod("client", {"inject": "false"}),
        slow,
        workloads.service("slow", 15006),
    )
    workloads.ready(kube, namespace, "client")
    workloads.ready(kube, namespace, "slow")
    workloads.routed(kubectl, namespace, "client", f"http://slow.{namespace}.svc/")
    command = [kubectl, "-n", namespace, "exec", "client", "-c", "app", "--", "python", "-c"]
    in_flight = subprocess.Popen(
        [*command, workloads.CLIENT, "GET", f"http://slow.{namespace}.svc/slow?4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        workloads.eventually(
            lambda: "slow request started" in workloads.logs(kubectl, namespace, "slow"),
            60,
            "the slow request to reach the app",
        )
        workloads.kubectl([kubectl], "-n", namespace, "delete", "pod", "slow", "--wait=false")
        seconds = workloads.gone(kube, namespace, "slow", grace)
        out, err = in_flight.communicate(timeout=60)
    finally:
        in_flight.kill()
    (result,) = json.loads(out or "[{}]")
    assert result.get("status") == 200, (result, err)
    assert json.loads(result["body"]) == {"slow": "done"}
    # Gone well inside its grace period: the app finished its request, the proxy drained.
    assert seconds < grace / 2, f"the pod took {seconds:.1f}s to go (grace {grace}s)"
