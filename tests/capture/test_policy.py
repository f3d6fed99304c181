"""What the capture rules and the per-destination policy guarantee, shown with
real processes: the proxy's UID exclusion is what prevents a loop, circuit
breaking counts connections per destination, outlier detection ejects one
failing destination, and SIGTERM drains captured inbound requests."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.capture.world import World, http_get, results
from tests.netns import PEER_V4, PEER_V4_EXTRA, POD_V4
from tests.support import wait_for

A = f"{PEER_V4}:8081"
B = f"{PEER_V4_EXTRA[0]}:8082"
C = f"{PEER_V4}:8083"
UID_RULE = ["SIDECAR_OUTPUT", "-m", "owner", "--uid-owner", "1337", "-j", "RETURN"]
HOPS = "listener.capture_outbound.downstream_cx_total"


def destination(address: str) -> str:
    """The stats prefix of a destination's own cluster."""
    return "cluster.DFPCluster_" + address.replace(":", "_") + "."


def test_without_the_proxy_uid_exclusion_captured_traffic_loops(world: World) -> None:
    world.start_servers([f"http={A}", f"http={B}", f"http={C}"])
    assert world.run_init().returncode == 0
    world.start_proxy(
        {
            "proxy-capture": "iptables",
            "proxy-max-connections": "20",
            "proxy-retries": "0",
            "proxy-timeout": "10s",
        }
    )
    [first] = world.client(f"http://{A}/echo")
    assert first["status"] == 200
    assert world.stat(HOPS) == 1  # one connection from the app, one hop

    for tool in ("iptables", "ip6tables"):
        world.link.pod.run([tool, "-t", "nat", "-D", *UID_RULE])
    before = world.stat(HOPS)
    [looped] = world.client(f"http://{B}/echo")
    hops = world.stat(HOPS) - before
    # The proxy's own connection to B was captured again, and again: the
    # per-destination limit (20 connections) is what finally stopped it.
    assert hops > 20, hops
    assert looped.get("status") != 200, looped
    assert world.metric("envoy_capture_outbound_requests", destination=B, code="200") == 0

    assert world.run_init().returncode == 0  # the init container puts the rule back
    # A fresh destination (B's pooled connections are still the looped ones):
    # one request, one connection to it.
    [again] = world.client(f"http://{C}/echo")
    assert again["status"] == 200
    assert world.metric("envoy_capture_outbound_requests", destination=C, code="200") == 1
    assert world.stat(destination(C) + "upstream_cx_total") == 1


def test_circuit_breaking_counts_connections_per_destination(world: World) -> None:
    world.start_servers([f"http={A}", f"http={B}"])
    assert world.run_init().returncode == 0
    world.start_proxy(
        {
            "proxy-capture": "iptables",
            "proxy-max-connections": "1",
            "proxy-retries": "0",
            "proxy-timeout": "20s",
        }
    )
    held = world.start_client(f"http://{A}/hold/one")
    wait_for(
        lambda: world.stat(destination(A) + "upstream_rq_active") == 1,
        timeout=20,
        what="a request held at A",
    )
    # A's one connection is busy; B has its own limit.
    [other] = world.client(f"http://{B}/echo")
    assert other["status"] == 200
    pending = world.start_client(f"http://{A}/hold/two")
    wait_for(
        lambda: world.stat(destination(A) + "upstream_rq_pending_active") == 1,
        timeout=20,
        what="a second request to A waiting for its connection",
    )
    [overflow] = world.client(f"http://{A}/echo")
    assert overflow["status"] == 503
    assert world.peer_get(f"http://{A}/release") == 200
    assert [r["status"] for r in results(held) + results(pending)] == [200, 200]
    assert world.metric("envoy_capture_outbound_requests", destination=A, code="503") == 1


def test_outlier_detection_ejects_the_failing_destination_only(world: World) -> None:
    world.start_servers([f"http={A}", f"http={B}"])
    assert world.run_init().returncode == 0
    world.start_proxy({"proxy-capture": "iptables", "proxy-outlier-5xx": "2", "proxy-retries": "0"})
    assert [r["status"] for r in world.client(*[f"http://{A}/status/500"] * 2)] == [500, 500]
    wait_for(
        lambda: world.stat(destination(A) + "outlier_detection.ejections_enforced_total") == 1,
        what="A ejected",
    )
    ejected, healthy = world.client(f"http://{A}/echo", f"http://{B}/echo")
    assert healthy["status"] == 200
    assert ejected["status"] == 503, ejected  # at once: A is not tried while ejected
    assert "no healthy upstream" in ejected["body"]
    assert world.stat(destination(B) + "outlier_detection.ejections_enforced_total") == 0


def test_sigterm_drains_captured_inbound_requests_in_flight(world: World) -> None:
    world.start_app(8080)
    assert world.run_init().returncode == 0
    proxy = world.start_proxy(
        {"proxy-capture": "iptables", "proxy-timeout": "30s"}, env={"SIDECAR_DRAIN_TIMEOUT": "20s"}
    )
    caller = world.link.peer.start(
        [sys.executable, "-c", _GET, f"http://{POD_V4}:8080/hold/drain"],
        stdout=subprocess.PIPE,
    )
    wait_for(
        lambda: world.stat("http.capture_inbound.downstream_rq_active") == 1,
        timeout=20,
        what="a captured inbound request held by the app",
    )
    proxy.send_signal(signal.SIGTERM)
    wait_for(lambda: "draining" in world.proxy_log(), what="the drain to start")
    assert proxy.poll() is None  # the request is still in flight
    status, _ = world.link.pod.call(http_get, ("127.0.0.1", 8080), "/release")
    assert status == 200
    out, _ = caller.communicate(timeout=30)
    assert out.decode().strip() == "200"
    assert proxy.wait(timeout=30) == 0, world.proxy_log()


_GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=60).status)"
