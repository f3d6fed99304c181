"""``serve --operator`` flags of the mesh: the certificate endpoint and the roots.

Registered on the ``serve`` parser by ``add_flags``; read once into
``MeshOptions`` (part of ``OperatorOptions``). Bad values raise ``ConfigError``
naming the flag and what is accepted.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract.mesh import SIGNER
from contract.units import parse_duration
from injector.errors import ConfigError

if TYPE_CHECKING:
    from injector.mesh.signer import IssuancePolicy
    from injector.mesh.trust import RotationPolicy

MESH_PORT = 15012
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class MeshOptions:
    """The policies are built on use (``cryptography`` loads only with --operator)."""

    enabled: bool = True
    port: int = MESH_PORT
    cert_lifetime: dt.timedelta = DAY
    root_lifetime: dt.timedelta = 365 * DAY
    ack_timeout: dt.timedelta = DAY
    interval: float = 10.0

    def issuance(self) -> IssuancePolicy:
        from injector.mesh.signer import IssuancePolicy  # noqa: PLC0415

        return IssuancePolicy(lifetime=self.cert_lifetime)

    def rotation(self) -> RotationPolicy:
        from injector.mesh.trust import RotationPolicy  # noqa: PLC0415

        return RotationPolicy(
            root_lifetime=self.root_lifetime,
            leaf_lifetime=self.cert_lifetime,
            ack_timeout=self.ack_timeout,
        )

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> MeshOptions:
        def duration(key: str, flag: str, default: dt.timedelta) -> dt.timedelta:
            text = options.get(key)
            if text is None:
                return default
            try:
                return dt.timedelta(seconds=parse_duration(str(text)))
            except ValueError as exc:
                raise ConfigError(f"{flag}: {exc}") from None

        port = options.get("mesh_port")
        port = MESH_PORT if port is None else int(port)
        if not 0 <= port <= 65535:
            raise ConfigError(f"--mesh-port {port}: expected 1 to 65535, or 0 for no mesh")
        lifetime = duration("mesh_cert_lifetime", "--mesh-cert-lifetime", DAY)
        made = cls(
            enabled=port != 0,
            port=port,
            cert_lifetime=lifetime,
            root_lifetime=duration("mesh_root_lifetime", "--mesh-root-lifetime", 365 * DAY),
            ack_timeout=duration("mesh_ack_timeout", "--mesh-ack-timeout", lifetime),
            interval=duration(
                "mesh_interval", "--mesh-check-interval", dt.timedelta(seconds=10)
            ).total_seconds(),
        )
        from injector.mesh.signer import MeshError  # noqa: PLC0415

        try:
            made.issuance()
            made.rotation()
        except MeshError as exc:
            raise ConfigError(f"--mesh-cert-lifetime / --mesh-root-lifetime: {exc}") from None
        return made


def add_flags(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("mesh mTLS")
    group.add_argument(
        "--mesh-port",
        type=int,
        help=f"Serve the agents' certificate endpoint on this port; 0 turns the mesh off "
        f"[{MESH_PORT}].",
    )
    group.add_argument("--mesh-cert-lifetime", help="Make pod certificates valid this long [24h].")
    group.add_argument(
        "--mesh-root-lifetime", help="Make a mesh root valid this long; rotated at 2/3 [8760h]."
    )
    group.add_argument(
        "--mesh-ack-timeout",
        help="After publishing a new root, switch to it at the latest after this long even "
        "if some agents did not report trusting it [the certificate lifetime].",
    )
    group.add_argument("--mesh-check-interval", help="Read the mesh root Secret this often [10s].")
    group.add_argument(
        "--mesh-signer",
        help="Pods get mesh certificates from this https:// URL [with --operator: its own "
        f"Service's port {MESH_PORT}; without: none, pods run without mesh mTLS].",
    )


def signer(flag: str | None, operators: str | None) -> str | None:
    """The certificate endpoint rendered into pods: ``--mesh-signer``, else the
    operator's own (``None`` without an operator: pods run without mesh mTLS)."""
    if not flag:
        return operators
    try:
        return SIGNER.parse(flag)
    except ValueError as exc:
        raise ConfigError(f"--mesh-signer: {exc}") from None
