"""The agent's own checks of a signer's answer, before anything reaches Envoy:
our key, only our identity, a chain to the returned roots, valid by this clock
(a certificate not valid yet or already expired is named as clock skew)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from contract.spiffe import SpiffeId
from injector.mesh import signer
from sidecar.errors import CertificateRejected
from sidecar.identity.issue import check

ME = SpiffeId("cluster.local", "shop", "web")
ROOT = signer.new_root("cluster.local")
NOW = dt.datetime.now(dt.UTC)


def answer(key: ec.EllipticCurvePrivateKey, identity: SpiffeId = ME, at: dt.datetime = NOW,
           root: signer.Authority = ROOT) -> dict[str, str]:  # fmt: skip
    issued = signer.issue(root, key.public_key(), identity, now=at)
    return {"certificateChain": issued.chain_pem.decode(), "trustBundle": ROOT.cert_pem.decode()}


def test_a_good_answer_passes() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf, roots = check(answer(key), key, ME.uri, NOW)
    assert leaf.public_key() == key.public_key()
    assert roots == [ROOT.certificate]


@pytest.mark.parametrize(
    ("case", "reason", "words"),
    [
        ("other-key", "KeyMismatch", "not for the key we sent"),
        (
            "other-identity",
            "IdentityMismatch",
            "expected only spiffe://cluster.local/ns/shop/sa/web",
        ),
        ("clock-behind", "ClockSkew", "this node's clock is behind"),
        ("clock-ahead", "ClockSkew", "this node's clock is ahead"),
        ("other-root", "UntrustedChain", "does not chain to the returned roots"),
        ("garbage", "BadAnswer", "unreadable"),
    ],
)
def test_bad_answers_are_refused_with_the_reason(case: str, reason: str, words: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = NOW
    if case == "other-key":
        body = answer(ec.generate_private_key(ec.SECP256R1()))
    elif case == "other-identity":
        body = answer(key, SpiffeId("cluster.local", "kube-system", "admin"))
    elif case == "clock-behind":  # the signer's clock is 10 minutes ahead of ours
        body = answer(key, at=NOW + dt.timedelta(minutes=10))
    elif case == "clock-ahead":
        body = answer(key)
        now = NOW + dt.timedelta(hours=25)
    elif case == "other-root":
        body = answer(key, root=signer.new_root("cluster.local"))
    else:
        body = {"certificateChain": "not a certificate", "trustBundle": ""}
    with pytest.raises(CertificateRejected, match=words) as caught:
        check(body, key, ME.uri, now)
    assert caught.value.reason == reason
