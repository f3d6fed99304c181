"""Mesh certificates for tests, made by the real signer core."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from contract.spiffe import SpiffeId
from injector.mesh import signer
from sidecar.proxy import mesh_tls


@dataclass(frozen=True)
class Leaf:
    chain_pem: bytes
    key_pem: bytes
    issued: signer.Issued


def leaf(
    root: signer.Authority,
    identity: SpiffeId,
    lifetime: dt.timedelta = dt.timedelta(hours=1),
    now: dt.datetime | None = None,
) -> Leaf:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = signer.issue(
        root, key.public_key(), identity, signer.IssuancePolicy(lifetime=lifetime), now
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Leaf(issued.chain_pem, key_pem, issued)


def write_sds(directory: Path, cert: Leaf, roots: list[signer.Authority]) -> None:
    """What the agent writes, written directly (for configuration tests)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.json").write_bytes(mesh_tls.sds_certificate(cert.chain_pem, cert.key_pem))
    (directory / "trust.json").write_bytes(mesh_tls.sds_trust(signer.bundle_pem(roots)))
