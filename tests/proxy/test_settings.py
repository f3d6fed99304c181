"""``sidecar proxy`` settings: what is accepted, and what a bad value says."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.proxy import DEFAULT_RETRY_ON
from contract.units import Rate, parse_address
from contract.values import UPSTREAM, parse_concurrency
from sidecar.errors import UsageError
from sidecar.proxy.settings import WaitReadySettings, load, load_any

parse_upstream = UPSTREAM.parse

BASE = {"SIDECAR_INBOUND_PORT": "8080"}


def _error(env: dict[str, str], argv: list[str] | None = None) -> str:
    with pytest.raises(UsageError) as info:
        load(argv or [], {**BASE, **env})
    return str(info.value)


def test_defaults_follow_the_runtime_contract() -> None:
    s = load([], BASE)
    assert (s.agent_host, s.agent_port) == ("0.0.0.0", 15020)
    assert (s.outbound_port, s.inbound_listen_port, s.admin_port) == (15001, 15006, 15000)
    assert s.upstream is None
    assert s.inbound_port == 8080
    assert s.timeout == 15.0
    assert s.retries == 2
    assert s.retry_on == tuple(DEFAULT_RETRY_ON.split(","))
    assert s.per_try_timeout is None
    assert s.rate_limit is None
    assert s.max_connections == 1024
    assert s.outlier_5xx is None
    assert (s.drain_timeout, s.drain_grace) == (30.0, 5.0)
    assert s.concurrency == 2
    assert s.work_dir == Path("/var/run/sidecar/proxy")
    assert s.envoy_path.is_file()
    assert s.listener_count == 1


def test_flags_win_over_variables() -> None:
    s = load(["--timeout=2s", "--rate-limit=10/m"], {**BASE, "SIDECAR_TIMEOUT": "9s"})
    assert s.timeout == 2.0
    assert s.rate_limit == Rate(10, 60.0)


def test_upstream_forms() -> None:
    plain = parse_upstream("http://payments:8080")
    assert (plain.host, plain.port, plain.tls, plain.authority) == (
        "payments",
        8080,
        False,
        "payments:8080",
    )
    secure = parse_upstream("https://api.example.com/")
    assert (secure.port, secure.tls, secure.authority) == (443, True, "api.example.com")
    v6 = parse_upstream("http://[::1]:81")
    assert (v6.host, v6.authority) == ("::1", "[::1]:81")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("payments:8080", "is not an http:// or https:// URL"),
        ("ftp://x", "is not an http:// or https:// URL"),
        ("http://x/api", "has a path or query"),
        ("http://u:p@x", "has credentials"),
        ("http://x:99999", "invalid port"),
    ],
)
def test_bad_upstreams(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_upstream(value)


@pytest.mark.parametrize(
    ("text", "workers"), [("1", 1), ("2", 2), ("500m", 1), ("1500m", 2), ("2.5", 3)]
)
def test_concurrency_follows_a_cpu_limit(text: str, workers: int) -> None:
    assert parse_concurrency(text) == workers


@pytest.mark.parametrize(
    ("env", "names", "says"),
    [
        ({"SIDECAR_TIMEOUT": "soon"}, "--timeout / SIDECAR_TIMEOUT", "a duration such as"),
        ({"SIDECAR_RETRIES": "11"}, "--retries / SIDECAR_RETRIES", "from 0 to 10"),
        ({"SIDECAR_RETRY_ON": "5xx,oops"}, "--retry-on / SIDECAR_RETRY_ON", "'oops'"),
        ({"SIDECAR_RATE_LIMIT": "0/s"}, "--rate-limit / SIDECAR_RATE_LIMIT", "at least 1"),
        ({"SIDECAR_MAX_CONNECTIONS": "0"}, "SIDECAR_MAX_CONNECTIONS", "at least 1"),
        ({"SIDECAR_OUTLIER_5XX": "x"}, "--outlier-5xx / SIDECAR_OUTLIER_5XX", "whole number"),
        ({"SIDECAR_PER_TRY_TIMEOUT": "0s"}, "SIDECAR_PER_TRY_TIMEOUT", "longer than 0s"),
        ({"SIDECAR_PER_TRY_TIMEOUT": "20s"}, "SIDECAR_TIMEOUT", "make the per-try timeout"),
        ({"SIDECAR_DRAIN_GRACE": "1m"}, "SIDECAR_DRAIN_TIMEOUT", "make it shorter"),
        ({"SIDECAR_CONCURRENCY": "lots"}, "--concurrency / SIDECAR_CONCURRENCY", "CPU"),
        ({"SIDECAR_LOG_LEVEL": "loud"}, "--log-level / SIDECAR_LOG_LEVEL", "one of debug"),
        ({"SIDECAR_AGENT_ADDR": "15020"}, "--agent-addr / SIDECAR_AGENT_ADDR", "HOST:PORT"),
        ({"SIDECAR_ADMIN_PORT": "15006"}, "SIDECAR_INBOUND_LISTEN_PORT", "both 15006"),
        ({"SIDECAR_INBOUND_PORT": "15006"}, "SIDECAR_INBOUND_PORT", "own port"),
        ({"SIDECAR_ENVOY_PATH": "/nonexistent"}, "SIDECAR_ENVOY_PATH", "not an executable"),
        ({"SIDECAR_INBOUND_PORT": ""}, "--upstream / SIDECAR_UPSTREAM", "nothing to proxy"),
    ],
)
def test_bad_values_name_the_flag_and_variable(env: dict[str, str], names: str, says: str) -> None:
    message = _error(env)
    assert names in message
    assert says in message


def test_https_upstream_needs_a_readable_ca(tmp_path: Path) -> None:
    message = _error(
        {"SIDECAR_UPSTREAM": "https://x", "SIDECAR_UPSTREAM_CA": str(tmp_path / "none.pem")}
    )
    assert "--upstream-ca / SIDECAR_UPSTREAM_CA" in message
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    s = load([], {**BASE, "SIDECAR_UPSTREAM": "https://x", "SIDECAR_UPSTREAM_CA": str(ca)})
    assert s.upstream_ca == ca
    # http upstreams ignore it; https without one uses the system bundle.
    assert load([], {**BASE, "SIDECAR_UPSTREAM": "http://x"}).upstream_ca is None
    system = load([], {**BASE, "SIDECAR_UPSTREAM": "https://x"}).upstream_ca
    assert system is not None
    assert system.is_file()


def test_wait_ready_reads_only_the_agent_address() -> None:
    parsed = load_any(
        ["--wait-ready", "--wait-timeout=5s"],
        {"SIDECAR_AGENT_ADDR": "0.0.0.0:15020", "SIDECAR_TIMEOUT": "not checked here"},
    )
    assert parsed == WaitReadySettings("http://127.0.0.1:15020/ready", 5.0)


@pytest.mark.parametrize(
    ("text", "address"),
    [("0.0.0.0:15020", ("0.0.0.0", 15020)), ("[::]:15020", ("::", 15020)), ("h:0", ("h", 0))],
)
def test_parse_address(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["15020", ":15020", "host:", "host:99999", "host:x"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(text)
