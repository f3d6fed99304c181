"""``OperatorOptions``: the operator's flags (``serve --operator ...``) over
its environment, read once by the CLI and handed to ``controller.hook``.

Flags are given as a mapping of argparse destinations (``None`` = unset):
injector_namespace, service, secret, webhook_configuration, lease,
dns_name, cert_ips, ca_validity, cert_validity, renew_fraction,
cert_interval. Raises ``ConfigError`` naming the flag.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contract import layout
from contract.units import parse_duration
from injector.admission import certs
from injector.errors import ConfigError
from injector.operator import rotation
from injector.operator.lease import LeaseTiming
from injector.operator.mesh_options import MeshOptions

DEFAULT_NAME = "sidecar-injector"
SECRET_NAME = "sidecar-injector-tls"  # noqa: S105 (a Secret's name, not a password)


@dataclass(frozen=True)
class OperatorOptions:
    namespace: str = DEFAULT_NAME
    service: str = DEFAULT_NAME
    secret: str = SECRET_NAME
    webhook_configuration: str = DEFAULT_NAME
    lease: str = DEFAULT_NAME
    identity: str = ""
    cert_dns: tuple[str, ...] = ()
    cert_ips: tuple[str, ...] = ()
    policy: rotation.RotationPolicy = field(default_factory=rotation.RotationPolicy)
    cert_interval: float = 30.0
    timing: LeaseTiming = field(default_factory=LeaseTiming)
    mesh: MeshOptions = field(default_factory=MeshOptions)

    @classmethod
    def from_mapping(
        cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> OperatorOptions:
        """Command-line flags (argparse destinations, ``None`` = unset) over the environment.

        Keys: injector_namespace, service, secret, webhook_configuration,
        lease, dns_name, cert_ips, ca_validity, cert_validity,
        renew_fraction, cert_interval. The namespace defaults to ``POD_NAMESPACE``, the
        in-cluster namespace, then ``sidecar-injector``; the identity to
        ``POD_NAME`` (else the host name) plus a random suffix.
        """
        env = os.environ if environ is None else environ

        def get(key: str, default: Any) -> Any:
            value = options.get(key)
            return default if value is None else value

        namespace = get("injector_namespace", env.get("POD_NAMESPACE") or _in_cluster_namespace())
        suffix = secrets.token_hex(3)
        identity = f"{env.get('POD_NAME') or socket.gethostname()}-{suffix}"
        try:
            policy = rotation.RotationPolicy(
                ca_validity=_duration(get("ca_validity", None), certs.CA_VALIDITY),
                serving_validity=_duration(get("cert_validity", None), certs.SERVING_VALIDITY),
                renew_fraction=float(get("renew_fraction", rotation.RENEW_FRACTION)),
            )
        except (certs.CertificateError, ValueError) as exc:
            raise ConfigError(f"--operator certificate policy: {exc}") from None
        interval = get("cert_interval", None)
        return cls(
            namespace=namespace,
            service=get("service", DEFAULT_NAME),
            secret=get("secret", SECRET_NAME),
            webhook_configuration=get("webhook_configuration", DEFAULT_NAME),
            lease=get("lease", DEFAULT_NAME),
            identity=identity,
            cert_dns=tuple(get("dns_name", ())),
            cert_ips=tuple(get("cert_ips", ())),
            policy=policy,
            cert_interval=_duration(interval, None).total_seconds() if interval else 30.0,
            mesh=MeshOptions.from_mapping(options),
        )

    def mesh_signer(self) -> str | None:
        """The URL agents call for certificates: the Service's mesh port (which targets
        the container port named ``mesh``, whatever ``--mesh-port`` is), or None."""
        if not self.mesh.enabled:
            return None
        return f"https://{self.service}.{self.namespace}.svc:{layout.MESH_PORT}"

    def dns_names(self) -> list[str]:
        names = certs.service_dns_names(self.service, self.namespace)
        return names + [name for name in self.cert_dns if name not in names]


def _duration(text: Any, default: Any) -> Any:
    if text is None:
        return default
    if isinstance(text, dt.timedelta):
        return text
    try:
        return dt.timedelta(seconds=parse_duration(str(text)))
    except ValueError as exc:
        raise ConfigError(f"--operator: {exc}") from None


def _in_cluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
            return handle.read().strip() or DEFAULT_NAME
    except OSError:
        return DEFAULT_NAME
