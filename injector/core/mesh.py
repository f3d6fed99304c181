"""Mesh mTLS for an injected proxy: the effective mode and what the agent needs.

Pure. ``mesh_values`` takes the proxy's rows (the pod's over the profile's)
and returns them with the mesh decided:

* the mode: the pod's ``mtls``, else the profile's ``mesh.mode``, else
  ``permissive``; where this injector runs no mesh (no operator certificate
  endpoint: ``Settings.mesh_signer`` is None) ``strict`` (pod or profile) is
  denied (such a pod must not run without it), an explicit ``permissive``
  is a warning, and the default is ``off``;
* ``off``: no mesh row reaches the agent, and ``allow-from`` or
  ``upstream-identity`` are refused (they need mTLS);
* issuance ``podCertificate`` only where the API server serves Pod
  Certificates (``Settings.pod_certificates``), else a warning and ``csr``;
  ``csr``: the agent calls ``Settings.mesh_signer``.
"""

from __future__ import annotations

from contract import layout, mesh, proxy
from contract.knobs import Values
from injector.core.model import PodRequest
from injector.core.settings import Settings
from injector.errors import InjectionDenied

CREDENTIALS_FILE = f"{layout.POD_CREDENTIALS_DIR}/{layout.POD_CREDENTIALS_FILE}"


def enabled(values: Values) -> bool:
    mode = values.get(mesh.MTLS)
    return mode is not None and mode != "off"


def mesh_values(
    request: PodRequest, values: Values, settings: Settings, warnings: list[str]
) -> Values:
    chosen = values.get(mesh.MTLS)  # the pod's, else the profile's
    mode = chosen or "permissive"
    if settings.mesh_signer is None and mode != "off":
        where = "annotation" if request.values.get(mesh.MTLS) else "the profile's mesh.mode"
        if mode == "strict":
            raise InjectionDenied(
                f"mtls: strict ({where}), but this injector runs no mesh (no operator "
                "certificate endpoint: serve --operator with --mesh-port); the pod must not run "
                "without it: set mtls to permissive or off, or install the operator"
            )
        if chosen is not None:
            warnings.append(
                f"mtls: permissive ({where}), but this injector runs no mesh: the pod runs "
                "without mTLS"
            )
        mode = "off"
    if mode == "off":
        asked_for = [
            knob.annotation
            for knob, value in (
                (mesh.ALLOW_FROM, request.values.get(mesh.ALLOW_FROM)),
                (mesh.UPSTREAM_IDENTITY, request.values.get(mesh.UPSTREAM_IDENTITY)),
            )
            if value is not None
        ]
        if asked_for:
            raise InjectionDenied(
                f"annotation {layout.PREFIX}{asked_for[0]} needs mesh mTLS: remove it or "
                f"set {layout.PREFIX}mtls to strict or permissive"
            )
        return values.with_values(dict.fromkeys(mesh.ROWS))
    _check_directions(values)
    issuance = values.get(mesh.ISSUANCE) or "csr"
    if issuance == "podCertificate" and not settings.pod_certificates:
        warnings.append(
            "the profile asks for issuance: podCertificate, but the API server does not serve "
            "PodCertificateRequests (a beta API, off by default): the operator's CSR endpoint "
            "issues this pod's certificate"
        )
        issuance = "csr"
    credentials = CREDENTIALS_FILE if issuance == "podCertificate" else None
    return values.with_values(
        {
            mesh.MTLS: mode,
            mesh.ISSUANCE: issuance,
            mesh.SIGNER: settings.mesh_signer if credentials is None else None,
            mesh.POD_CREDENTIALS: credentials,
        }
    )


def _check_directions(values: Values) -> None:
    upstream = values.get(proxy.UPSTREAM)
    if values.get(mesh.UPSTREAM_IDENTITY) is not None:
        if upstream is None:
            raise InjectionDenied(
                f"annotation {layout.PREFIX}upstream-identity needs "
                f"{layout.PREFIX}proxy-upstream (the upstream it names)"
            )
        if upstream.tls:
            raise InjectionDenied(
                f"annotation {layout.PREFIX}upstream-identity with an https:// "
                f"{layout.PREFIX}proxy-upstream: the mesh encrypts the connection itself; "
                "give the upstream as http://"
            )
    if values.get(mesh.ALLOW_FROM) is not None and values.get(proxy.INBOUND_PORT) is None:
        raise InjectionDenied(
            f"annotation {layout.PREFIX}allow-from restricts inbound calls, and this proxy has "
            f"no inbound listener: set {layout.PREFIX}proxy-inbound-port or remove it"
        )
