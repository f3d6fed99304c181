"""Traffic through a real Envoy run by ``sidecar proxy``, to real upstreams."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tests.proxy.harness import Proxy, Response, Upstream, admin_stat, free_ports, metric, request
from tests.support import wait_for

ProxyFactory = Callable[..., Proxy]


def test_requests_flow_outbound_and_inbound(upstream: Upstream, proxy: ProxyFactory) -> None:
    p = (
        proxy(upstream=f"http://127.0.0.1:{upstream.port}", inbound_port=upstream.port)
        .start()
        .ready()
    )

    out = request(p.outbound_port, "/echo", {"Host": "app.local"})
    assert out.status == 200
    seen = out.json()["headers"]
    # The upstream sees its own authority, a request id, and the same id comes back.
    assert seen["host"] == f"127.0.0.1:{upstream.port}"
    assert seen["x-request-id"] == out.headers["x-request-id"]

    kept = request(p.outbound_port, "/echo", {"x-request-id": "abc-123"})
    assert kept.json()["headers"]["x-request-id"] == "abc-123"
    assert kept.headers["x-request-id"] == "abc-123"

    inbound = request(p.inbound_listen_port, "/echo")
    assert inbound.status == 200
    assert inbound.json()["headers"]["x-request-id"] == inbound.headers["x-request-id"]

    logs = wait_for(
        lambda: (lines := p.access_log()) and len(lines) >= 3 and lines,
        what="three access log lines on stdout",
    )
    by_direction = {line["direction"] for line in logs}
    assert by_direction == {"outbound", "inbound"}
    first = logs[0]
    assert first["status"] == 200
    assert first["path"] == "/echo"
    assert first["request_id"]


def test_flaky_upstream_is_retried_and_succeeds(upstream: Upstream, proxy: ProxyFactory) -> None:
    p = proxy(upstream=f"http://127.0.0.1:{upstream.port}", args=["--retries=2"]).start().ready()
    response = request(p.outbound_port, "/flaky/a?fail=2")
    assert response.status == 200
    assert response.json() == {"try": 3}
    assert upstream.hits["/flaky/a"] == 3
    # One more failure than retries: the client sees the 503.
    assert request(p.outbound_port, "/flaky/b?fail=3").status == 503
    assert upstream.hits["/flaky/b"] == 3


def test_slow_upstream_hits_the_route_timeout(upstream: Upstream, proxy: ProxyFactory) -> None:
    p = (
        proxy(upstream=f"http://127.0.0.1:{upstream.port}", args=["--timeout=300ms", "--retries=0"])
        .start()
        .ready()
    )
    response = request(p.outbound_port, "/hold/slow")
    assert response.status == 504
    assert b"upstream request timeout" in response.body
    log = wait_for(lambda: [x for x in p.access_log() if x["status"] == 504], what="504 log")
    assert "UT" in log[0]["flags"]


def test_per_try_timeout_retries_a_slow_try(upstream: Upstream, proxy: ProxyFactory) -> None:
    p = (
        proxy(
            upstream=f"http://127.0.0.1:{upstream.port}",
            args=["--timeout=5s", "--per-try-timeout=200ms", "--retries=1"],
        )
        .start()
        .ready()
    )
    response = request(p.outbound_port, "/hold/per-try")
    assert response.status == 504
    assert upstream.hits["/hold/per-try"] == 2  # the first try timed out and was retried


def test_dead_upstream_gives_503_with_retry_counters(proxy: ProxyFactory) -> None:
    agent, admin, outbound, inbound, dead = free_ports(5)
    p = (
        proxy(
            upstream=f"http://127.0.0.1:{dead}",
            args=["--retries=2"],
            agent_port=agent,
            admin_port=admin,
            outbound_port=outbound,
            inbound_listen_port=inbound,
        )
        .start()
        .ready()
    )
    response = request(p.outbound_port, "/anything")
    assert response.status == 503
    assert b"connect" in response.body.lower() or b"reset" in response.body.lower()
    text = p.metrics()
    assert metric(text, "envoy_cluster_upstream_rq_retry", envoy_cluster_name="outbound") == 2
    assert (
        metric(text, "envoy_cluster_upstream_cx_connect_fail", envoy_cluster_name="outbound") == 3
    )
    # The agent's own metrics are in the same exposition.
    assert metric(text, "sidecar_proxy_envoy_up") == 1
    assert metric(text, "sidecar_proxy_ready_seconds") > 0


def test_rate_limit_answers_429_with_a_header(upstream: Upstream, proxy: ProxyFactory) -> None:
    p = (
        proxy(
            upstream=f"http://127.0.0.1:{upstream.port}",
            inbound_port=upstream.port,
            args=["--rate-limit=3/h"],
        )
        .start()
        .ready()
    )
    outbound = [request(p.outbound_port, "/echo") for _ in range(5)]
    assert [r.status for r in outbound] == [200, 200, 200, 429, 429]
    assert all(r.headers.get("x-sidecar-rate-limited") == "true" for r in outbound[3:])
    assert "x-sidecar-rate-limited" not in outbound[0].headers
    # Each listener has its own bucket.
    assert request(p.inbound_listen_port, "/echo").status == 200
    text = p.metrics()
    limited = metric(
        text,
        "envoy_http_local_rate_limit_rate_limited",
        envoy_local_http_ratelimit_prefix="outbound",
    )
    assert limited == 2


def test_circuit_breaker_overflow_gives_503_overloaded(
    upstream: Upstream, proxy: ProxyFactory
) -> None:
    p = (
        proxy(
            upstream=f"http://127.0.0.1:{upstream.port}",
            args=["--max-connections=1", "--retries=0", "--timeout=20s"],
        )
        .start()
        .ready()
    )
    results: list[Response] = []
    holders = [
        threading.Thread(
            target=lambda: results.append(request(p.outbound_port, "/hold/cb")), daemon=True
        )
        for _ in range(2)
    ]
    holders[0].start()
    wait_for(lambda: upstream.held == 1, what="the first request to reach the upstream")
    holders[1].start()  # waits for the one connection: the one pending request allowed
    wait_for(
        lambda: admin_stat(p, "cluster.outbound.upstream_rq_pending_active") == 1,
        what="a pending request",
    )
    overflow = request(p.outbound_port, "/echo")
    assert overflow.status == 503
    assert overflow.headers.get("x-envoy-overloaded") == "true"
    upstream.release()
    for holder in holders:
        holder.join(10)
    assert [r.status for r in results] == [200, 200]
    text = p.metrics()
    overflows = metric(
        text, "envoy_cluster_upstream_rq_pending_overflow", envoy_cluster_name="outbound"
    ) + metric(text, "envoy_cluster_upstream_rq_overflow", envoy_cluster_name="outbound")
    assert overflows >= 1
    log = wait_for(lambda: [x for x in p.access_log() if x["status"] == 503], what="503 log")
    assert "UO" in log[0]["flags"]


def test_outlier_detection_ejects_after_consecutive_5xx(
    upstream: Upstream, proxy: ProxyFactory
) -> None:
    p = (
        proxy(upstream=f"http://127.0.0.1:{upstream.port}", args=["--outlier-5xx=2", "--retries=0"])
        .start()
        .ready()
    )
    for _ in range(2):
        assert request(p.outbound_port, "/status/500").status == 500
    ejected = wait_for(
        lambda: metric(
            p.metrics(),
            "envoy_cluster_outlier_detection_ejections_enforced_consecutive_5xx",
            envoy_cluster_name="outbound",
        ),
        what="an outlier ejection",
    )
    assert ejected == 1
