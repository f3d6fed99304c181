"""The annotation API: parsing into types, roles asked for, warnings, denials."""

from __future__ import annotations

import pytest

from contract import config, proxy
from contract.layout import PREFIX
from contract.units import Rate
from injector.core import model
from injector.core.model import NamespaceInfo, parse_annotations
from injector.errors import InjectionDenied


def a(**values: str) -> dict[str, str]:
    return {PREFIX + k.replace("_", "-"): v for k, v in values.items()}


def test_values_are_parsed_once_into_types() -> None:
    req = parse_annotations(
        a(inject="true", proxy_timeout="1m30s", proxy_rate_limit="100/s", proxy_retries="3")
    )
    assert req.values.get(proxy.TIMEOUT) == 90.0
    assert req.values.get(proxy.RATE_LIMIT) == Rate(100, 1.0)
    assert req.values.get(proxy.RETRIES) == 3
    assert proxy.TIMEOUT.format(90.0) == "90s"


def test_default_role_is_proxy_only_without_other_roles() -> None:
    assert parse_annotations(a(inject="true")).roles == ("proxy",)
    assert parse_annotations(a(inject="true", secret_db="a/b")).roles == ("secrets",)
    both = parse_annotations(a(inject="true", secret_db="a/b", proxy_upstream="http://x:1"))
    assert both.roles == ("proxy", "secrets")
    off = parse_annotations(a(inject="true", proxy="false", proxy_retries="3"))
    assert off.roles == ()
    assert any("ignored" in w for w in off.warnings)


def test_a_role_row_without_its_trigger_is_a_warning() -> None:
    req = parse_annotations(a(inject="true", config_interval="10s"))
    assert req.roles == ("proxy",)
    assert req.warnings == (
        f"{PREFIX}config-interval set without {PREFIX}config-source; no config role is injected",
    )
    assert parse_annotations(a(config_source="configmap:x")).values.get(config.SOURCE) is not None


def test_an_opted_out_pod_is_never_denied() -> None:
    req = parse_annotations(a(inject="false", proxy_retries="lots"))
    assert req.inject is False


def test_all_invalid_values_are_reported_together() -> None:
    with pytest.raises(InjectionDenied) as info:
        parse_annotations(a(inject="maybe", proxy_retries="11", proxy_inbound_port="0"))
    message = str(info.value)
    assert "sidecar.example.io/inject: 'maybe'" in message
    assert '"true" or "false"' in message
    assert "proxy-retries: '11'" in message
    assert "0 to 10" in message
    assert "proxy-inbound-port: '0'" in message


def test_unknown_key_suggests_the_nearest() -> None:
    req = parse_annotations(a(inject="true", proxy_retires="3"))
    assert req.warnings == (
        "unknown annotation sidecar.example.io/proxy-retires ignored; "
        "did you mean sidecar.example.io/proxy-retries?",
    )


def test_namespace_label() -> None:
    label = PREFIX + "injection"
    assert NamespaceInfo("a", {label: "enabled"}).injection_default() == (True, None)
    assert NamespaceInfo("a", {label: "disabled"}).injection_default() == (False, None)
    default, warning = NamespaceInfo("a", {label: "yes"}).injection_default()
    assert default is None
    assert warning is not None
    assert "enabled or disabled" in warning


def test_a_set_of_annotations_is_parsed_once_and_only_that_set() -> None:
    """Replicas share annotations: the second parse is the first's result; a set
    differing in one value, or not ours, is its own; a denial is never kept."""
    first = parse_annotations({**a(inject="true", proxy_timeout="5s"), "team": "x"})
    again = parse_annotations({**a(inject="true", proxy_timeout="5s"), "team": "y"})
    other = parse_annotations(a(inject="true", proxy_timeout="6s"))
    assert again is first
    assert other.values.get(proxy.TIMEOUT) == 6.0
    assert first.values.get(proxy.TIMEOUT) == 5.0
    for _ in range(2):
        with pytest.raises(InjectionDenied, match="proxy-retries"):
            parse_annotations(a(inject="true", proxy_retries="lots"))
    big = a(inject="true", config_source="configmap:x", config_path="/" + "p" * model.MEMO_BYTES)
    assert parse_annotations(big) is not parse_annotations(big)
    assert parse_annotations(big) == parse_annotations(big)
    assert model._memo.cache_info().maxsize == model.MEMO_ENTRIES
