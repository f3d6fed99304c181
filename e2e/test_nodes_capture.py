"""Transparent capture and the egress proxy on a real node, with pods and Services.

Namespace ``capture-*`` (Pod Security ``privileged``, what capture needs):

- ``echo`` (uninjected APP, Service ``echo`` 80 -> 8080) and ``other``
  (uninjected: APP on 8080 and a plain TCP echo on 7000; Service ``other``
  9090 -> 8080, 7000 and 7001 -> 7000) are the destinations; ``echo`` is
  also the client of the inbound test;
- ``shop`` (injected, ``proxy-capture: iptables``, ``proxy-timeout: 3s``,
  ``proxy-capture-tcp-ports: 7000``, Service ``shop`` 80 -> the app's own
  8080, not 15006): its app knows nothing of the proxy. The kubelet runs
  ``sidecar-capture-init`` first (user 0, NET_ADMIN and NET_RAW only), then
  the proxy, then the app.

Namespace ``egress-*`` (Pod Security ``restricted``): ``web`` (injected,
``proxy-egress: http-proxy``, no capability anywhere) calls ``echo`` by a
name the forward proxy resolves.

Every client is a plain Python program run in the app container with
``kubectl exec`` (the app's user, so its traffic is the app's).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from e2e import workloads
from e2e.conftest import Injector
from e2e.kube import Kube
from e2e.workloads import metric, request

pytestmark = pytest.mark.nodes

ENFORCE = "pod-security.kubernetes.io/enforce"
CAPTURE_INIT = "sidecar-capture-init"
APP_USER = 1000  # not the proxy's 1337: that one is never captured (the injector says so)
RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": APP_USER,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
TCP_ECHO = r"""
import socket, threading
server = socket.create_server(("0.0.0.0", 7000))
def serve(connection):
    with connection:
        while data := connection.recv(4096):
            connection.sendall(data)
while True:
    threading.Thread(target=serve, args=(server.accept()[0],), daemon=True).start()
"""
# Client-first and not HTTP: the proxy passes it through as TCP. COUNT
# connections; "fin": each half-closes right after sending, then reads until
# the server closes (Envoy closes such a client while its inspectors read,
# unless the port is in proxy-capture-tcp-ports); else it reads the echo.
TCP_CLIENT = r"""
import socket, sys
host, port, message, count, mode = sys.argv[1:]
for _ in range(int(count)):
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(message.encode())
        if mode == "fin":
            s.shutdown(socket.SHUT_WR)
        got = b""
        while (mode == "fin" or len(got) < len(message)) and (data := s.recv(4096)):
            got += data
    print(got.decode(), end="")
"""
# The capture init container's command again, between two looks at the rules
# (chain counters left out: they move with the traffic).
RERUN = r"""
import json, re, subprocess, sys
def rules():
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    return [re.sub(r" \[\d+:\d+\]$", "", l) for l in out.splitlines() if l[:1] not in ("#", "")]
before = rules()
code = subprocess.run(sys.argv[1:]).returncode
print(json.dumps({"before": before, "code": code, "after": rules()}), flush=True)
"""
# What an unchanged app does with HTTP_PROXY / NO_PROXY: urllib's default opener.
URLLIB_CLIENT = r"""
import json, sys, urllib.error, urllib.request
results = []
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            results.append({"status": response.status, "body": response.read().decode()})
    except urllib.error.HTTPError as exc:
        results.append({"status": exc.code, "body": exc.read().decode()})
print(json.dumps(results))
"""


@dataclass(frozen=True)
class Captured:
    namespace: str
    kubectl: str
    echo_ip: str  # the ClusterIPs: what the app's connections were sent to
    other_ip: str

    def app(self, program: str, *args: str, pod: str = "shop") -> str:
        return workloads.kubectl(
            [self.kubectl],
            "-n", self.namespace, "exec", pod, "-c", "app", "--", "python", "-c", program, *args,
        )  # fmt: skip

    def metrics(self) -> str:
        (result,) = request(
            self.kubectl, self.namespace, "shop", "GET", "http://127.0.0.1:15020/metrics"
        )
        assert result["status"] == 200, result
        return str(result["body"])


def _cluster_ip(kube: Kube, namespace: str, name: str) -> str:
    service = kube.get(f"/api/v1/namespaces/{namespace}/services/{name}").expect(200)
    return str(service["spec"]["clusterIP"])


def _answered(kubectl: str, namespace: str, pod: str, url: str) -> None:
    """GET url from pod until it answers 200: a new endpoint reaches kube-proxy a
    moment after its pod is Ready. From a captured app, the proxy answers at once
    (503 while the Service has no route), so ``workloads.routed`` is not enough."""

    def ok() -> bool:
        (result,) = request(kubectl, namespace, pod, "GET", url)
        return bool(result["status"] == 200)

    workloads.eventually(ok, 60, f"{url} to answer 200 from {pod}")


def _app(**extra: Any) -> dict[str, Any]:
    return workloads.container(securityContext=RESTRICTED, **extra)


@pytest.fixture(scope="module")
def captured(kube: Kube, kubectl: str, injector: Injector) -> Iterator[Captured]:
    namespace = kube.create_namespace("capture", labels={ENFORCE: "privileged"})
    try:
        other = workloads.pod(
            "other",
            {"inject": "false"},
            containers=[
                workloads.container(),
                workloads.container("tcp", TCP_ECHO, ports=[{"containerPort": 7000}]),
            ],
        )
        other_service = workloads.service("other", 8080, 9090)
        other_service["spec"]["ports"] = [
            {"name": "http", "port": 9090, "targetPort": 8080},
            {"name": "tcp", "port": 7000, "targetPort": 7000},
            {"name": "tcp-inspected", "port": 7001, "targetPort": 7000},
        ]
        shop = workloads.pod(
            "shop",
            {
                "inject": "true",
                "proxy-capture": "iptables",
                "proxy-retries": "2",
                "proxy-timeout": "3s",
                "proxy-capture-tcp-ports": "7000",
            },
            containers=[_app()],
        )
        workloads.apply(
            kubectl,
            namespace,
            workloads.pod("echo", {"inject": "false"}),
            workloads.service("echo", 8080),
            other,
            other_service,
            shop,
            workloads.service("shop", 8080),
        )
        for name in ("echo", "other", "shop"):
            workloads.ready(kube, namespace, name)
        # The Services route before the tests start (one 200 each).
        _answered(kubectl, namespace, "echo", f"http://shop.{namespace}.svc/")
        _answered(kubectl, namespace, "shop", f"http://echo.{namespace}.svc/")
        _answered(kubectl, namespace, "shop", f"http://other.{namespace}.svc:9090/")
        yield Captured(
            namespace,
            kubectl,
            _cluster_ip(kube, namespace, "echo"),
            _cluster_ip(kube, namespace, "other"),
        )
    finally:
        kube.delete_namespace(namespace)


def test_the_capture_init_container_installs_the_rules_with_two_capabilities(
    kube: Kube, captured: Captured
) -> None:
    ns = captured.namespace
    ended = workloads.init_ended(kube, ns, "shop", 10, container=CAPTURE_INIT)
    assert ended["exitCode"] == 0, ended
    pod = kube.get(f"/api/v1/namespaces/{ns}/pods/shop").expect(200)
    inits = pod["spec"]["initContainers"]
    assert inits[0]["name"] == CAPTURE_INIT
    # The only privileged container, and only these two capabilities.
    assert inits[0]["securityContext"]["capabilities"] == {
        "add": ["NET_ADMIN", "NET_RAW"],
        "drop": ["ALL"],
    }
    for container in [*inits[1:], *pod["spec"]["containers"]]:
        capabilities = container.get("securityContext", {}).get("capabilities", {})
        assert not capabilities.get("add"), container["name"]
    log = workloads.logs(captured.kubectl, ns, "shop", CAPTURE_INIT)
    (installed,) = [json.loads(line) for line in log.splitlines() if "rules installed" in line]
    # The local node: ["IPv4", "IPv6"] in 42 ms (IPv6 is skipped only where the pod has none).
    assert "IPv4" in installed["families"], log


def test_the_app_calls_two_services_and_every_request_is_counted_per_destination(
    captured: Captured,
) -> None:
    ns = captured.namespace
    echo = [*request(captured.kubectl, ns, "shop", "GET", f"http://echo.{ns}.svc/a", 2)]
    other = [
        *request(captured.kubectl, ns, "shop", "GET", f"http://other.{ns}.svc:9090/b", 2),
        *request(captured.kubectl, ns, "shop", "GET", f"http://{captured.other_ip}:9090/c"),
    ]
    for result in [*echo, *other]:
        assert result["status"] == 200, result
        # The Host header as the app wrote it; Envoy was on the path (request id).
        assert "x-request-id" in json.loads(result["body"])["headers"], result
    assert {json.loads(r["body"])["host"] for r in echo} == {"echo"}
    assert {json.loads(r["body"])["host"] for r in other} == {"other"}
    name = "envoy_capture_outbound_requests"
    text = captured.metrics()
    # The fixture made one request to each before (_answered).
    assert metric(text, name, destination=f"{captured.echo_ip}:80", code="200") == 1 + 2, text
    assert metric(text, name, destination=f"{captured.other_ip}:9090", code="200") == 1 + 3, text


def test_a_503_from_a_service_is_retried(captured: Captured) -> None:
    ns = captured.namespace
    # echo answers 503 to every odd /flaky call: the proxy retries, the app sees 200.
    (flaky,) = request(captured.kubectl, ns, "shop", "GET", f"http://echo.{ns}.svc/flaky")
    assert flaky["status"] == 200, flaky
    assert json.loads(flaky["body"])["flaky"] == 2  # the 503 came first
    text = captured.metrics()
    cluster = "capture_outbound_http"
    assert metric(text, "envoy_cluster_upstream_rq_retry", envoy_cluster_name=cluster) >= 1, text


def test_a_slow_service_gets_the_route_timeout(captured: Captured) -> None:
    ns = captured.namespace
    # proxy-timeout 3s; other's /slow?8 answers after 8 s: the app gets a 504 at 3 s.
    (slow,) = request(captured.kubectl, ns, "shop", "GET", f"http://other.{ns}.svc:9090/slow?8")
    assert slow["status"] == 504, slow
    destination = f"{captured.other_ip}:9090"
    text = captured.metrics()
    assert metric(text, "envoy_capture_outbound_requests", destination=destination, code="504") == 1


def _tcp_counted(captured: Captured, destination: str, count: int, size: int) -> None:
    """Each connection to destination counted as TCP, with its bytes both ways."""

    def counted() -> str | None:
        # Counted when the connection closes (the access log's moment).
        text = captured.metrics()
        sent = metric(text, "envoy_capture_outbound_bytes_sent", destination=destination)
        return text if sent == count * size else None

    text = workloads.eventually(counted, 30, f"the TCP connections to {destination} counted")
    connections = metric(
        text, "envoy_capture_outbound_connections", destination=destination, protocol="tcp"
    )
    assert connections == count, text
    received = metric(text, "envoy_capture_outbound_bytes_received", destination=destination)
    assert received == count * size, text


def test_plain_tcp_to_a_service_passes_through(captured: Captured) -> None:
    host = f"other.{captured.namespace}.svc"
    message = "not http, just bytes\n"
    # Port 7001: looked at (not HTTP, not TLS), then passed through.
    assert captured.app(TCP_CLIENT, host, "7001", message, "1", "read") == message
    _tcp_counted(captured, f"{captured.other_ip}:7001", 1, len(message))
    # Port 7000 (proxy-capture-tcp-ports): passed through at once, so clients that
    # half-close right after sending get their answer too, every time.
    assert captured.app(TCP_CLIENT, host, "7000", message, "5", "fin") == message * 5
    _tcp_counted(captured, f"{captured.other_ip}:7000", 5, len(message))


def test_inbound_through_a_service_to_the_app_port_arrives_via_the_proxy(
    captured: Captured,
) -> None:
    ns = captured.namespace
    inbound = "envoy_cluster_upstream_rq_total"
    before = metric(captured.metrics(), inbound, envoy_cluster_name="capture_inbound_http")
    # Service shop targets 8080, the app's own port: the rules send it to the proxy.
    (answer,) = request(captured.kubectl, ns, "echo", "GET", f"http://shop.{ns}.svc/in")
    assert answer["status"] == 200, answer
    body = json.loads(answer["body"])
    assert (body["host"], body["path"]) == ("shop", "/in")
    assert "x-request-id" in body["headers"], body  # added by the proxy's inbound listener
    after = metric(captured.metrics(), inbound, envoy_cluster_name="capture_inbound_http")
    assert after == before + 1


def test_the_capture_init_container_run_again_in_the_pod_changes_nothing(
    kube: Kube, captured: Captured
) -> None:
    """What an init container restart does: the same image, command, env and
    securityContext (user 0, NET_ADMIN and NET_RAW only) in the pod's network
    namespace, which the kubelet gives an ephemeral container."""
    ns = captured.namespace
    path = f"/api/v1/namespaces/{ns}/pods/shop"
    init = kube.get(path).expect(200)["spec"]["initContainers"][0]
    # Everything an ephemeral container may have (no resources, ports or probes).
    kept = ("image", "imagePullPolicy", "args", "env", "envFrom", "securityContext", "volumeMounts")
    again = {k: v for k, v in init.items() if k in kept}
    again |= {"name": "capture-again", "command": ["python", "-c", RERUN, *init["command"]]}
    patch = {"spec": {"ephemeralContainers": [again]}}
    kube.request(
        "PATCH", path + "/ephemeralcontainers", patch,
        content_type="application/strategic-merge-patch+json",
    ).expect(200)  # fmt: skip

    def ended() -> dict[str, Any] | None:
        statuses = kube.get(path).expect(200)["status"].get("ephemeralContainerStatuses", [])
        state: dict[str, Any] = next(
            (s["state"] for s in statuses if s["name"] == again["name"]), {}
        )
        return state.get("terminated")

    terminated = workloads.eventually(ended, 60, "the capture command to run again")
    assert terminated["exitCode"] == 0, terminated
    log = workloads.logs(captured.kubectl, ns, "shop", again["name"])
    result = json.loads(log.splitlines()[-1])
    assert result["code"] == 0, log
    assert result["after"] == result["before"], log
    jumps = [line for line in result["after"] if line.endswith("-j SIDECAR_OUTPUT")]
    assert jumps == ["-A OUTPUT -p tcp -j SIDECAR_OUTPUT"], result["after"]
    # And the app's calls still go through the proxy.
    (answer,) = request(captured.kubectl, ns, "shop", "GET", f"http://echo.{ns}.svc/again")
    assert "x-request-id" in json.loads(answer["body"])["headers"], answer


@pytest.fixture
def egress_namespace(kube: Kube) -> Iterator[str]:
    namespace = kube.create_namespace("egress", labels={ENFORCE: "restricted"})
    yield namespace
    kube.delete_namespace(namespace)


def test_the_egress_proxy_works_in_a_restricted_namespace(
    kube: Kube, captured: Captured, egress_namespace: str
) -> None:
    ns, target = egress_namespace, captured.namespace
    web = workloads.pod(
        "web",
        {"inject": "true", "proxy-egress": "http-proxy", "proxy-retries": "2"},
        containers=[_app()],
    )
    workloads.apply(captured.kubectl, ns, web)  # admitted: restricted allows it
    pod = workloads.ready(kube, ns, "web")
    for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
        capabilities = container.get("securityContext", {}).get("capabilities", {})
        assert not capabilities.get("add"), container["name"]
    # "echo.<ns>" is no in-cluster suffix of NO_PROXY: the app's urllib sends it
    # to the forward proxy, which resolves it (the pod's search domains).
    by_proxy = f"http://echo.{target}/x"
    direct = f"http://echo.{target}.svc/y"  # .svc is in NO_PROXY: straight to the Service
    out = workloads.kubectl(
        [captured.kubectl],
        "-n", ns, "exec", "web", "-c", "app", "--",
        "python", "-c", URLLIB_CLIENT, by_proxy, by_proxy, direct,
    )  # fmt: skip
    results = json.loads(out)
    assert [r["status"] for r in results] == [200, 200, 200], results
    headers = [json.loads(r["body"])["headers"] for r in results]
    assert all("x-request-id" in h for h in headers[:2]), headers
    assert "x-request-id" not in headers[2], headers
    (scrape,) = request(captured.kubectl, ns, "web", "GET", "http://127.0.0.1:15020/metrics")
    text = str(scrape["body"])
    name = "envoy_egress_requests"
    assert metric(text, name, destination=f"echo.{target}", method="GET", code="200") == 2, text
    assert f"echo.{target}.svc" not in text
