"""Identities and ``allow-from`` patterns: what injector and agent both accept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.spiffe import (
    MAX_PEERS,
    PeerPattern,
    SpiffeId,
    parse_allow_from,
    parse_mtls_mode,
    parse_peer,
    parse_trust_domain,
)


def test_identity_round_trip_and_sni() -> None:
    identity = SpiffeId.of("cluster.local", "shop", "checkout")
    assert identity.uri == "spiffe://cluster.local/ns/shop/sa/checkout"
    assert SpiffeId.parse(identity.uri) == identity
    assert identity.sni == "checkout.shop.mesh.internal"
    long_sa = ".".join(["a" * 60] * 4)
    sni = SpiffeId.of("td", "n" * 63, long_sa).sni
    assert len(sni) <= 253
    assert sni.endswith(".mesh.internal")


@pytest.mark.parametrize(
    "uri",
    [
        "https://cluster.local/ns/a/sa/b",
        "spiffe://cluster.local/ns/a/sa/b/c",
        "spiffe://cluster.local/ns/A/sa/b",
        "spiffe://Cluster/ns/a/sa/b",
        "spiffe://cluster.local/sa/b/ns/a",
    ],
)
def test_bad_identities_are_named(uri: str) -> None:
    with pytest.raises(ValueError, match=r"spiffe|not a"):
        SpiffeId.parse(uri)


def test_allow_from_patterns() -> None:
    patterns = parse_allow_from(" shop/checkout, ops/*,*/prometheus, team-*/*, shop/checkout")
    assert [str(p) for p in patterns] == ["shop/checkout", "ops/*", "*/prometheus", "team-*/*"]
    assert parse_allow_from("*") == (PeerPattern("*", "*"),)
    who = SpiffeId("td", "team-a", "api")
    assert [p.matches(who) for p in patterns] == [False, False, False, True]
    assert PeerPattern("*", "*").matches(who)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "names no peer"),
        ("shop", "NAMESPACE/SERVICEACCOUNT"),
        ("shop/a/b", "NAMESPACE/SERVICEACCOUNT"),
        ("Shop/a", "namespace 'Shop'"),
        ("shop/*a", "service account"),
        ("sh*p/a", "namespace"),
        ("shop/a,,ops/b", "empty entry"),
        (",".join(f"n/s{i}" for i in range(MAX_PEERS + 1)), f"at most {MAX_PEERS}"),
    ],
)
def test_bad_allow_from_says_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_allow_from(text)


@given(st.text(max_size=300))
def test_allow_from_parses_or_refuses_any_text(text: str) -> None:
    outcome: object
    try:
        outcome = len(parse_allow_from(text))
    except ValueError as exc:
        outcome = str(exc)
    assert outcome if isinstance(outcome, str) else 1 <= outcome <= MAX_PEERS


def test_modes_domains_and_peers() -> None:
    assert parse_mtls_mode(" STRICT ") == "strict"
    with pytest.raises(ValueError, match="strict, permissive or off"):
        parse_mtls_mode("on")
    assert parse_trust_domain("example.org") == "example.org"
    with pytest.raises(ValueError, match="trust domain"):
        parse_trust_domain("Example.org")
    assert parse_peer("shop/checkout") == ("shop", "checkout")
    with pytest.raises(ValueError, match="NAMESPACE/SERVICEACCOUNT"):
        parse_peer("shop/*")
