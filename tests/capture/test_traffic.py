"""Transparent capture with real processes: an app that knows nothing of the
proxy, in a pod network namespace whose rules the capture init container
installed, calls servers in another namespace by IP and port (and by name,
through the forward proxy); every call goes through Envoy and is counted per
destination."""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.capture.world import World
from tests.kubelet import Mount
from tests.netns import PEER_V4, PEER_V4_EXTRA, PEER_V6, POD_V4
from tests.proxy.test_tls import _issue, _pem
from tests.support import wait_for

A = f"{PEER_V4}:8081"
B = f"{PEER_V4_EXTRA[0]}:8082"
V6 = f"[{PEER_V6}]:8083"
ECHO = f"{PEER_V4}:9000"
PLAIN_ECHO = f"{PEER_V4}:9001"  # in proxy-capture-tcp-ports: never inspected
TLS = f"{PEER_V4}:8443"
EXCLUDED_CIDR = f"{PEER_V4_EXTRA[1]}:8084"
EXCLUDED_PORT = f"{PEER_V4}:5432"
APP_HOSTS = f"127.0.0.1 localhost\n{PEER_V4} secure.test\n"
PROXY_HOSTS = f"127.0.0.1 localhost\n{PEER_V4_EXTRA[0]} payments.test\n{PEER_V4} secure.test\n"
FORWARD = "http://127.0.0.1:15004"
CA_MOUNT = [Mount("client-ca", "/var/run/test-ca", read_only=True)]
CLIENT_CA = {"CLIENT_CA": "/var/run/test-ca/ca.pem"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("capture test CA", ca_key, None)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("secure.test"),
        x509.IPAddress(ipaddress.ip_address(PEER_V4)),
    ]
    cert = _issue("secure.test", key, (ca.subject, ca_key), sans)
    paths = {"ca": root / "ca.pem", "cert": root / "cert.pem", "key": root / "key.pem"}
    paths["ca"].write_bytes(_pem(ca))
    paths["cert"].write_bytes(_pem(cert))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for path in paths.values():
        path.chmod(0o644)
    root.chmod(0o755)
    return paths


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("capture"), app_hosts=APP_HOSTS, proxy_hosts=PROXY_HOSTS)
    try:
        world.start_servers(
            [
                f"http={A}",
                f"http={B}",
                f"http={V6}",
                f"echo={ECHO}",
                f"echo={PLAIN_ECHO}",
                f"tls={TLS}:{pki['cert']}:{pki['key']}",
                f"http={EXCLUDED_CIDR}",
                f"http={EXCLUDED_PORT}",
            ]
        )
        world.start_app(8080)
        shutil.copy(pki["ca"], world.pod.volume("client-ca") / "ca.pem")
        init = world.run_init(
            {
                "proxy-capture-exclude-ports": "5432",
                "proxy-capture-exclude-cidrs": PEER_V4_EXTRA[1],
            }
        )
        assert init.returncode == 0, init.stderr
        world.start_proxy(
            {
                "proxy-capture": "iptables",
                "proxy-egress": "http-proxy",
                "proxy-timeout": "1s",
                "proxy-retries": "2",
                "proxy-capture-tcp-ports": PLAIN_ECHO.rsplit(":", 1)[1],
            }
        )
        yield world
    finally:
        world.close()


def echo_headers(result: dict[str, object]) -> dict[str, str]:
    assert result.get("status") == 200, result
    headers: dict[str, str] = json.loads(str(result["body"]))["headers"]
    return headers


def test_unchanged_client_calls_servers_by_ip_counted_per_destination(pod: World) -> None:
    calls = [f"http://{A}/echo"] * 2 + [f"http://{B}/echo"] * 3 + [f"http://{V6}/echo"]
    results = pod.client(*calls)
    for result, target in zip(results, calls, strict=True):
        headers = echo_headers(result)
        assert headers["host"] == target.split("/")[2]  # the Host header as the app wrote it
        assert headers["x-request-id"]  # added by Envoy: the call went through the proxy
        assert not [h for h in headers if h.startswith("x-envoy-")]  # nothing about the proxy
    name = "envoy_capture_outbound_requests"
    assert pod.metric(name, destination=A, code="200") == 2
    assert pod.metric(name, destination=B, code="200") == 3
    assert pod.metric(name, destination=V6, code="200") == 1
    wait_for(
        lambda: {A, B, V6} <= {line.get("upstream") for line in pod.access_log()},
        what="access log lines naming each destination",
    )


def test_a_503_is_retried_for_the_destination(pod: World) -> None:
    [result] = pod.client(f"http://{B}/flaky/retry?fail=2")
    assert result["status"] == 200
    assert json.loads(str(result["body"])) == {"try": 3}
    assert pod.stat("cluster.capture_outbound_http.upstream_rq_retry") >= 2


def test_a_slow_destination_gets_the_route_timeout(pod: World) -> None:
    [result] = pod.client(f"http://{A}/hold/slow")
    assert result["status"] == 504
    assert "upstream request timeout" in str(result["body"])
    assert pod.metric("envoy_capture_outbound_requests", destination=A, code="504") == 1


def test_non_http_tcp_passes_through_with_connection_metrics(pod: World) -> None:
    [result] = pod.client(f"tcp://{ECHO}/%00%01not-http-at-all")
    assert result["echo"] == "\x00\x01not-http-at-all"
    name = "envoy_capture_outbound_connections"
    assert pod.metric(name, destination=ECHO, protocol="tcp") == 1
    assert pod.metric("envoy_capture_outbound_bytes_sent", destination=ECHO) == 17
    assert pod.metric("envoy_capture_outbound_bytes_received", destination=ECHO) == 17


def test_a_client_that_half_closes_at_once_passes_on_a_tcp_port(pod: World) -> None:
    """Envoy closes a connection whose client half-closes while the listener's
    inspectors still read it (27 of 30 here, to an inspected port);
    proxy-capture-tcp-ports takes the inspectors off those ports."""
    results = pod.client(*[f"tcpfin://{PLAIN_ECHO}/ping-{i}%0A" for i in range(10)])
    assert [r.get("echo") for r in results] == [f"ping-{i}\n" for i in range(10)], results
    name = "envoy_capture_outbound_connections"
    assert pod.metric(name, destination=PLAIN_ECHO, protocol="tcp") == 10
    assert pod.stat("listener.capture_outbound.downstream_listener_filter_remote_close") == 0


def test_tls_from_the_app_passes_untouched_with_sni_in_metrics(
    pod: World, pki: dict[str, Path]
) -> None:
    # The app verifies the server's own certificate: the proxy did not terminate TLS.
    by_ip, by_name = pod.client(
        f"https://{TLS}/echo", "https://secure.test:8443/echo", env=CLIENT_CA, mounts=CA_MOUNT
    )
    assert "x-request-id" not in echo_headers(by_ip)
    assert "x-request-id" not in echo_headers(by_name)
    name = "envoy_capture_outbound_connections"
    assert pod.metric(name, destination=TLS, protocol="tls", sni="") == 1
    assert pod.metric(name, destination=TLS, protocol="tls", sni="secure.test") == 1
    assert pod.stat("tcp.capture_outbound_tls.downstream_cx_total") >= 1


def test_inbound_reaches_the_app_through_the_proxy(pod: World) -> None:
    before = pod.stat("http.capture_inbound.downstream_rq_total")
    result = pod.link.peer.run(["python3", "-c", _CALL, f"http://{POD_V4}:8080/echo"]).stdout
    answer = json.loads(result)
    assert answer["status"] == 200
    assert answer["headers"]["x-request-id"]  # the inbound listener handled it
    assert pod.stat("http.capture_inbound.downstream_rq_total") == before + 1
    assert pod.stat("listener.capture_inbound.downstream_cx_total") >= 1


def test_exclusions_and_loopback_bypass_the_proxy(pod: World) -> None:
    results = pod.client(
        f"http://{EXCLUDED_CIDR}/echo", f"http://{EXCLUDED_PORT}/echo", "http://127.0.0.1:8080/echo"
    )
    for result in results:
        assert "x-request-id" not in echo_headers(result), result
    metrics = pod.metrics()
    assert EXCLUDED_CIDR not in metrics
    assert EXCLUDED_PORT not in metrics


def test_forward_proxy_reaches_servers_by_name_the_app_cannot_resolve(
    pod: World, pki: dict[str, Path]
) -> None:
    proxy_env = {"HTTP_PROXY": FORWARD, "HTTPS_PROXY": FORWARD, **CLIENT_CA}
    [direct] = pod.client("http://payments.test:8082/echo")
    assert "error" in direct  # the app itself cannot resolve the name
    plain, flaky, tunnel = pod.client(
        "http://payments.test:8082/echo",
        "http://payments.test:8082/flaky/forward?fail=1",
        "https://secure.test:8443/echo",
        env=proxy_env,
        mounts=CA_MOUNT,
    )
    assert echo_headers(plain)["x-request-id"]
    assert json.loads(str(flaky["body"])) == {"try": 2}
    assert "x-request-id" not in echo_headers(tunnel)  # TLS end to end inside the tunnel
    name = "envoy_egress_requests"
    assert pod.metric(name, destination="payments.test:8082", method="GET", code="200") == 2
    assert pod.metric(name, destination="secure.test:8443", method="CONNECT", code="200") == 1


_CALL = """
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    body = json.loads(r.read())
print(json.dumps({"status": r.status, "headers": body["headers"]}))
"""
