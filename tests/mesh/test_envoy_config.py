"""The mesh pieces of the Envoy bootstrap: accepted by Envoy itself in every mode,
and ``allow-from`` compiled into principal matchers that mean what the pattern means."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.spiffe import PeerPattern, SpiffeId, parse_allow_from
from injector.mesh import signer
from sidecar.errors import UsageError
from sidecar.proxy import bootstrap, mesh_tls
from sidecar.proxy.settings import load
from tests.mesh.pki import leaf, write_sds

BASE = {
    "SIDECAR_INBOUND_PORT": "8080",
    "SIDECAR_POD_NAME": "web-1",
    "SIDECAR_POD_NAMESPACE": "shop",
    "SIDECAR_SERVICE_ACCOUNT": "web",
    "SIDECAR_SIGNER": "https://sidecar-injector.sidecar-injector.svc:15012",
}


def _settings(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    return load([], {**BASE, "SIDECAR_WORK_DIR": str(tmp_path), **env})


@pytest.mark.parametrize(
    "env",
    [
        {"SIDECAR_MTLS": "strict"},
        {"SIDECAR_MTLS": "permissive"},
        {"SIDECAR_MTLS": "strict", "SIDECAR_ALLOW_FROM": "shop/*,*/prom,team-*/api-*,ops/x"},
        {
            "SIDECAR_MTLS": "permissive",
            "SIDECAR_ALLOW_FROM": "*",
            "SIDECAR_ALLOW_FROM_MODE": "dry-run",
        },
        {
            "SIDECAR_MTLS": "permissive",
            "SIDECAR_ALLOW_FROM": "shop/web",
            "SIDECAR_UPSTREAM": "http://checkout.shop.svc:15006",
            "SIDECAR_UPSTREAM_IDENTITY": "shop/checkout",
        },
    ],
    ids=["strict", "permissive", "strict-allow", "permissive-dry-run", "outbound"],
)
def test_envoy_accepts_the_mesh_bootstrap(tmp_path: Path, env: dict[str, str]) -> None:
    settings = _settings(tmp_path, **env)
    assert settings.mesh is not None
    root = signer.new_root("cluster.local")
    write_sds(settings.mesh.directory, leaf(root, settings.mesh.identity), [root])
    path = tmp_path / "envoy.json"
    path.write_bytes(bootstrap.to_json(bootstrap.render(settings)))
    result = subprocess.run(
        [str(settings.envoy_path), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chains_per_mode(tmp_path: Path) -> None:
    strict = bootstrap.render(_settings(tmp_path, SIDECAR_MTLS="strict"))
    inbound = strict["static_resources"]["listeners"][0]
    assert [c["name"] for c in inbound["filter_chains"]] == ["mesh", "plaintext-refused"]
    permissive = bootstrap.render(_settings(tmp_path, SIDECAR_MTLS="permissive"))
    inbound = permissive["static_resources"]["listeners"][0]
    assert [c["name"] for c in inbound["filter_chains"]] == ["mesh", "passthrough", "plaintext"]
    off = bootstrap.render(_settings(tmp_path, SIDECAR_MTLS="off"))
    assert len(off["static_resources"]["listeners"][0]["filter_chains"]) == 1
    tls = inbound["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is True
    assert tls["common_tls_context"]["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_3"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIDECAR_MTLS": "on"}, "--mtls / SIDECAR_MTLS: 'on' is not one of"),
        ({"SIDECAR_MTLS": "off", "SIDECAR_ALLOW_FROM": "a/b"}, "needs mesh mTLS"),
        ({"SIDECAR_MTLS": "strict", "SIDECAR_SIGNER": "http://x:1"}, "is not an https:// URL"),
        ({"SIDECAR_MTLS": "strict", "SIDECAR_POD_NAME": ""}, "--pod-name / SIDECAR_POD_NAME"),
        ({"SIDECAR_MTLS": "strict", "SIDECAR_ALLOW_FROM": "a"}, "--allow-from / SIDECAR_ALLOW"),
        (
            {
                "SIDECAR_MTLS": "strict",
                "SIDECAR_UPSTREAM": "https://x:443",
                "SIDECAR_UPSTREAM_IDENTITY": "a/b",
            },
            "give the upstream as http://",
        ),
    ],
)
def test_bad_mesh_values_name_the_flag(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        _settings(tmp_path, **env)


def _envoy_match(matcher: dict[str, object], value: str) -> bool:
    """StringMatcher semantics (exact, prefix, safe_regex full match)."""
    if "exact" in matcher:
        return value == matcher["exact"]
    if "prefix" in matcher:
        return value.startswith(str(matcher["prefix"]))
    regex = matcher["safe_regex"]
    assert isinstance(regex, dict)
    return re.fullmatch(str(regex["regex"]), value) is not None


names = st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True)
patterns = st.builds(
    PeerPattern,
    st.one_of(names, st.just("*"), names.map(lambda n: n + "*")),
    st.one_of(names, st.just("*"), names.map(lambda n: n + "*")),
)


@given(patterns, names, names)
def test_principal_matchers_mean_what_the_pattern_means(
    pattern: PeerPattern, namespace: str, account: str
) -> None:
    identity = SpiffeId("cluster.local", namespace, account)
    matcher = mesh_tls.principal_matcher(pattern, "cluster.local")
    assert _envoy_match(matcher, identity.uri) == pattern.matches(identity)
    other_domain = SpiffeId("evil.example", namespace, account)
    assert not _envoy_match(matcher, other_domain.uri)


def test_matchers_for_the_documented_examples() -> None:
    compiled = [
        mesh_tls.principal_matcher(p, "td") for p in parse_allow_from("shop/checkout,ops/*,*")
    ]
    assert compiled == [
        {"exact": "spiffe://td/ns/shop/sa/checkout"},
        {"prefix": "spiffe://td/ns/ops/sa/"},
        {"prefix": "spiffe://td/ns/"},
    ]
