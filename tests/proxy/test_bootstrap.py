"""The rendered Envoy bootstrap: Envoy accepts every combination, and the
policy lands where the runtime contract says."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from sidecar.proxy.bootstrap import RATE_LIMITED_HEADER, render, to_json
from sidecar.proxy.settings import ProxySettings, load

BASE = {"SIDECAR_WORK_DIR": "/tmp/unused"}


def _settings(**env: str) -> ProxySettings:
    return load([], {**BASE, **env})


def _listener(config: dict[str, Any], name: str) -> dict[str, Any]:
    listeners = config["static_resources"]["listeners"]
    found: dict[str, Any] = next(x for x in listeners if x["name"] == name)
    return found


def _cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        x for x in config["static_resources"]["clusters"] if x["name"] == name
    )
    return found


def _hcm(listener: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return config


def _route(listener: dict[str, Any]) -> dict[str, Any]:
    routes = _hcm(listener)["route_config"]["virtual_hosts"][0]["routes"]
    route: dict[str, Any] = routes[0]["route"]
    return route


COMBINATIONS = {
    "outbound-http": {"SIDECAR_UPSTREAM": "http://payments.default.svc:8080"},
    "outbound-https": {"SIDECAR_UPSTREAM": "https://api.example.com"},
    "outbound-ip": {"SIDECAR_UPSTREAM": "https://10.0.0.7:8443"},
    "inbound": {"SIDECAR_INBOUND_PORT": "8080"},
    "everything": {
        "SIDECAR_UPSTREAM": "https://api.example.com",
        "SIDECAR_INBOUND_PORT": "8080",
        "SIDECAR_TIMEOUT": "2s",
        "SIDECAR_RETRIES": "3",
        "SIDECAR_RETRY_ON": "5xx,reset,retriable-status-codes",
        "SIDECAR_PER_TRY_TIMEOUT": "500ms",
        "SIDECAR_RATE_LIMIT": "100/s",
        "SIDECAR_MAX_CONNECTIONS": "64",
        "SIDECAR_OUTLIER_5XX": "5",
    },
    "no-retries-no-timeout": {
        "SIDECAR_UPSTREAM": "http://x",
        "SIDECAR_RETRIES": "0",
        "SIDECAR_TIMEOUT": "0s",
    },
}


@pytest.mark.parametrize("case", sorted(COMBINATIONS))
def test_envoy_accepts_the_bootstrap(case: str, tmp_path: Path) -> None:
    settings = _settings(**COMBINATIONS[case])
    path = tmp_path / "envoy.json"
    path.write_bytes(to_json(render(settings)))
    result = subprocess.run(
        [str(settings.envoy_path), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_policy_lands_where_the_contract_says() -> None:
    config = render(_settings(**COMBINATIONS["everything"]))
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"

    outbound = _listener(config, "outbound")
    assert outbound["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15001}
    assert outbound["traffic_direction"] == "OUTBOUND"
    assert outbound["drain_type"] == "MODIFY_ONLY"  # healthcheck/fail leaves the app's calls be
    route = _route(outbound)
    assert route["timeout"] == "2.000s"
    assert route["host_rewrite_literal"] == "api.example.com"
    retry = route["retry_policy"]
    assert retry["retry_on"] == "5xx,reset,retriable-status-codes"
    assert retry["num_retries"] == 3
    assert retry["per_try_timeout"] == "0.500s"
    assert retry["retriable_status_codes"] == [503]
    assert set(retry["retry_back_off"]) == {"base_interval", "max_interval"}

    inbound = _listener(config, "inbound")
    assert inbound["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 15006}
    assert inbound["traffic_direction"] == "INBOUND"
    assert "retry_policy" not in _route(inbound)  # retries are the client side's business
    assert _route(inbound)["timeout"] == "2.000s"

    for listener in (outbound, inbound):
        hcm = _hcm(listener)
        assert hcm["generate_request_id"] is True
        assert hcm["preserve_external_request_id"] is True
        assert hcm["always_set_request_id_in_response"] is True
        assert hcm["access_log"][0]["name"] == "envoy.access_loggers.stdout"
        limiter = hcm["http_filters"][0]["typed_config"]
        assert limiter["token_bucket"] == {
            "max_tokens": 100,
            "tokens_per_fill": 100,
            "fill_interval": "1.000s",
        }
        for key in ("filter_enabled", "filter_enforced"):
            assert limiter[key]["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}
        assert limiter["response_headers_to_add"][0]["header"] == {
            "key": RATE_LIMITED_HEADER,
            "value": "true",
        }
        assert hcm["http_filters"][-1]["name"] == "envoy.filters.http.router"

    out_cluster = _cluster(config, "outbound")
    assert out_cluster["type"] == "STRICT_DNS"
    threshold = out_cluster["circuit_breakers"]["thresholds"][0]
    assert threshold["max_connections"] == threshold["max_pending_requests"] == 64
    assert threshold["max_requests"] == 64
    assert "retry_budget" in threshold
    assert out_cluster["outlier_detection"]["consecutive_5xx"] == 5
    tls = out_cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "api.example.com"
    san = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert san == [{"san_type": "DNS", "matcher": {"exact": "api.example.com"}}]

    in_cluster = _cluster(config, "inbound")
    endpoint = in_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8080}
    assert "outlier_detection" not in in_cluster


def test_ip_upstream_verifies_the_ip_and_sends_no_sni() -> None:
    config = render(_settings(**COMBINATIONS["outbound-ip"]))
    cluster = _cluster(config, "outbound")
    assert cluster["type"] == "STATIC"
    tls = cluster["transport_socket"]["typed_config"]
    assert "sni" not in tls
    san = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert san == [{"san_type": "IP_ADDRESS", "matcher": {"exact": "10.0.0.7"}}]
    assert _route(_listener(config, "outbound"))["host_rewrite_literal"] == "10.0.0.7:8443"


def test_only_the_configured_directions_exist() -> None:
    outbound_only = render(_settings(**COMBINATIONS["outbound-http"]))
    assert [x["name"] for x in outbound_only["static_resources"]["listeners"]] == ["outbound"]
    no_retries = render(_settings(**COMBINATIONS["no-retries-no-timeout"]))
    route = _route(_listener(no_retries, "outbound"))
    assert "retry_policy" not in route
    assert route["timeout"] == "0.000s"  # Envoy: 0 disables the route timeout
