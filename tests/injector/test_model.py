"""The annotation API: README table, parsing, warnings, denials, parity with the agent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from injector.core.annotations import ANNOTATIONS, FIXED_KEYS, PREFIX, markdown_table
from injector.core.model import NamespaceInfo, parse_annotations
from injector.core.values import parse_retry_on, parse_upstream
from injector.errors import InjectionDenied
from sidecar.proxy.settings import parse_retry_on as agent_parse_retry_on
from sidecar.proxy.settings import parse_upstream as agent_parse_upstream

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_has_exactly_the_generated_table() -> None:
    text = README.read_text()
    match = re.search(r"<!-- annotations:start -->\n(.*?)<!-- annotations:end -->", text, re.S)
    assert match, "README.md lacks the annotations markers"
    assert match.group(1) == markdown_table(), (
        "README annotation table is stale: run "
        "`sidecar-injector annotations --markdown` and paste it between the markers"
    )


def test_table_lists_every_fixed_key() -> None:
    table = markdown_table()
    for key in FIXED_KEYS:
        if key.split("-")[0] in ("proxy", "secrets", "config") and key.endswith(
            ("-image", "-cpu", "-memory")
        ):
            continue
        assert f"`{key}`" in table
    assert len(ANNOTATIONS) == table.count("\n| `")


def a(**values: str) -> dict[str, str]:
    return {PREFIX + k.replace("_", "-"): v for k, v in values.items()}


def test_durations_are_canonical_and_rates_kept() -> None:
    req = parse_annotations(a(inject="true", proxy_timeout="1m30s", proxy_rate_limit="100/s"))
    assert req.proxy is not None
    assert req.proxy.timeout == "90s"
    assert req.proxy.rate_limit == "100/s"


def test_default_role_is_proxy_only_without_other_roles() -> None:
    assert parse_annotations(a(inject="true")).roles == ("proxy",)
    assert parse_annotations(a(inject="true", secret_db="a/b")).roles == ("secrets",)
    both = parse_annotations(a(inject="true", secret_db="a/b", proxy_upstream="http://x:1"))
    assert both.roles == ("proxy", "secrets")
    off = parse_annotations(a(inject="true", proxy="false", proxy_retries="3"))
    assert off.roles == ()
    assert any("ignored" in w for w in off.warnings)


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


@pytest.mark.parametrize("text", ["5xx", " reset , 5xx", "5xx,sometimes", ""])
def test_retry_on_is_checked_as_the_agent_checks_it(text: str) -> None:
    try:
        expected: tuple[str, ...] | None = agent_parse_retry_on(text)
    except ValueError:
        expected = None
    try:
        got: tuple[str, ...] | None = tuple(parse_retry_on(text).split(","))
    except ValueError:
        got = None
    assert got == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://a:80",
        "https://api.example.com",
        "http://a/x",
        "ftp://a",
        "http://u:p@a",
        "http://a:0",
    ],
)
def test_upstream_validation_matches_the_agent(url: str) -> None:
    def ok(parse: object) -> bool:
        try:
            parse(url)  # type: ignore[operator]
        except ValueError:
            return False
        return True

    assert ok(parse_upstream) == ok(agent_parse_upstream)
