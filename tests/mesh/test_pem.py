"""What the agent reads of certificates without cryptography: fingerprints,
serials, validity, a kubelet credential bundle; junk is a ValueError."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from contract.spiffe import SpiffeId
from injector.mesh import signer
from sidecar.identity import pem
from tests.mesh.pki import leaf

ROOT = signer.new_root("cluster.local")


def test_serial_validity_and_fingerprint_match_cryptographys() -> None:
    made = leaf(ROOT, SpiffeId("cluster.local", "shop", "web"), dt.timedelta(hours=2))
    (der,) = pem.certificates(made.chain_pem)
    assert pem.serial(der) == made.issued.serial
    assert pem.validity(der) == (made.issued.not_before, made.issued.not_after)
    root_der = ROOT.certificate.public_bytes(serialization.Encoding.DER)
    assert pem.fingerprint(root_der) == ROOT.fingerprint == hashlib.sha256(root_der).hexdigest()


def test_a_credential_bundle_splits_into_key_and_chain() -> None:
    made = leaf(ROOT, SpiffeId("cluster.local", "shop", "web"))
    key, chain = pem.split_credentials(made.key_pem + made.chain_pem + ROOT.cert_pem)
    assert key == made.key_pem
    assert pem.certificates(chain)[0] == pem.certificates(made.chain_pem)[0]
    with pytest.raises(ValueError, match="private key followed by"):
        pem.split_credentials(made.chain_pem)


@given(st.binary(max_size=400))
def test_junk_der_is_a_value_error(data: bytes) -> None:
    for read in (pem.serial, pem.validity):
        try:
            read(data)
        except ValueError:
            continue
        except (IndexError, UnicodeDecodeError) as exc:  # pragma: no cover - the fault
            raise AssertionError(f"{read.__name__} raised {exc!r}") from exc
