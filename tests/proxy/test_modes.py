"""``sidecar proxy --capture iptables`` and ``--egress http-proxy``: settings and
the Envoy configuration they add, checked by Envoy itself (``--mode validate``).
Traffic through them runs in network namespaces: tests/capture/."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from sidecar.errors import UsageError
from sidecar.proxy import bootstrap, config
from sidecar.proxy.settings import ProxySettings, load

MODES = {"SIDECAR_CAPTURE": "iptables", "SIDECAR_EGRESS": "http-proxy"}


def settings(tmp_path: Path, **env: str) -> ProxySettings:
    return load(["--work-dir", str(tmp_path)], env)


def listeners(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in rendered["static_resources"]["listeners"]}


def test_capture_or_egress_alone_is_something_to_proxy(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--capture / SIDECAR_CAPTURE"):
        settings(tmp_path)
    capture = settings(tmp_path, SIDECAR_CAPTURE="iptables")
    assert capture.capture is not None
    assert capture.egress is None
    assert capture.listener_count == 2
    both = settings(tmp_path, SIDECAR_INBOUND_PORT="8080", **MODES)
    assert both.listener_count == 4
    assert list(listeners(config.render(both))) == [
        "inbound",
        "capture_outbound",
        "capture_inbound",
        "egress",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIDECAR_CAPTURE": "nftables"}, "--capture / SIDECAR_CAPTURE: 'nftables' is not one of"),
        ({"SIDECAR_EGRESS": "socks"}, "--egress / SIDECAR_EGRESS: 'socks' is not one of"),
        (
            {"SIDECAR_CAPTURE": "iptables", "SIDECAR_CAPTURE_OUTBOUND_PORT": "15000"},
            "--capture-outbound-port / SIDECAR_CAPTURE_OUTBOUND_PORT and --admin-port",
        ),
        (
            {
                "SIDECAR_EGRESS": "http-proxy",
                "SIDECAR_EGRESS_PORT": "15003",
                "SIDECAR_CAPTURE": "iptables",
            },
            "--egress-port / SIDECAR_EGRESS_PORT and --capture-inbound-port",
        ),
    ],
)
def test_bad_mode_settings_name_the_flag(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        settings(tmp_path, **env)
    assert message in str(caught.value)


def test_explicit_mode_renders_as_before(tmp_path: Path) -> None:
    plain = settings(tmp_path, SIDECAR_UPSTREAM="http://payments:8080", SIDECAR_INBOUND_PORT="8080")
    assert config.render(plain) == bootstrap.render(plain)


def test_captured_listeners_bind_loopback_and_restore_the_destination(tmp_path: Path) -> None:
    rendered = listeners(config.render(settings(tmp_path, **MODES)))
    outbound, inbound, egress = (
        rendered[n] for n in ("capture_outbound", "capture_inbound", "egress")
    )
    assert outbound["address"]["socket_address"]["address"] == "127.0.0.1"
    assert inbound["address"]["socket_address"]["address"] == "0.0.0.0"
    assert egress["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15004}
    assert outbound["listener_filters"][0]["name"] == "envoy.filters.listener.original_dst"
    assert inbound["traffic_direction"] == "INBOUND"  # drained on SIGTERM
    # A connection straight to the listener (not redirected) is never proxied to itself.
    chains = {c["name"]: c for c in outbound["filter_chains"]}
    assert chains["self"]["filter_chain_match"] == {"destination_port": 15002}
    assert chains["http"]["filter_chain_match"]["transport_protocol"] == "raw_buffer"


@pytest.mark.parametrize(
    "env",
    [
        MODES,
        {**MODES, "SIDECAR_OUTLIER_5XX": "3", "SIDECAR_RATE_LIMIT": "100/s"},
        {**MODES, "SIDECAR_RETRIES": "0", "SIDECAR_TIMEOUT": "0s"},
        {"SIDECAR_CAPTURE": "iptables", "SIDECAR_UPSTREAM": "https://api.example.com"},
        {**MODES, "SIDECAR_CAPTURE_TCP_PORTS": "25,3306,6000-6010"},
    ],
    ids=["modes", "policy", "no-retries", "with-explicit", "tcp-ports"],
)
def test_envoy_accepts_the_rendered_configuration(tmp_path: Path, env: dict[str, str]) -> None:
    s = settings(tmp_path, **env)
    path = tmp_path / "envoy.json"
    path.write_bytes(bootstrap.to_json(config.render(s)))
    result = subprocess.run(
        [str(s.envoy_path), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_tcp_ports_take_the_inspectors_off_those_destination_ports(tmp_path: Path) -> None:
    s = settings(tmp_path, SIDECAR_CAPTURE="iptables", SIDECAR_CAPTURE_TCP_PORTS="6000-6010,25")
    filters = listeners(config.render(s))["capture_outbound"]["listener_filters"]
    by_name = {f["name"].rsplit(".", 1)[1]: f for f in filters}
    assert "filter_disabled" not in by_name["original_dst"]  # the port it matches is its own
    rules = [{"destination_port_range": {"start": 25, "end": 26}}]
    rules.append({"destination_port_range": {"start": 6000, "end": 6011}})
    for name in ("tls_inspector", "http_inspector"):
        assert by_name[name]["filter_disabled"] == {"or_match": {"rules": rules}}
    one = settings(tmp_path, SIDECAR_CAPTURE="iptables", SIDECAR_CAPTURE_TCP_PORTS="3306")
    filters = listeners(config.render(one))["capture_outbound"]["listener_filters"]
    assert filters[1]["filter_disabled"] == {"destination_port_range": {"start": 3306, "end": 3307}}
    inbound = listeners(config.render(one))["capture_inbound"]["listener_filters"]
    assert all("filter_disabled" not in f for f in inbound)
