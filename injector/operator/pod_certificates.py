"""The signer's second front door: Kubernetes PodCertificateRequests (KEP-4317).

Where the API server serves ``certificates.k8s.io/v1beta1``
``podcertificaterequests`` (``discover``: beta and off by default in 1.36, so
it is looked up, never assumed), the kubelet of a pod whose profile asks for
``issuance: podCertificate`` creates a PodCertificateRequest for signer
``sidecar.example.io/mesh`` with the pod's key (``stubPKCS10Request``, or the
deprecated ``pkixPublicKey`` whose proof of possession the API server already
checked). The leader answers each pending one:

* the pod must be live with the request's UID, service account and node, and
  carry the injector's mesh status (its trust domain), else ``Denied``;
* ECDSA P-256 keys only (``Denied``, ``UnsupportedKeyType``);
* the same signer core signs for ``min(--mesh-cert-lifetime,
  maxExpirationSeconds)`` (at least 1 hour, Kubernetes' floor), with
  ``beginRefreshAt`` at about half-life inside Kubernetes' margins;
* the status is written with the request's ``resourceVersion`` (a 409: another
  writer won). The API server itself validates it (times, key, chain).

A Denied or Failed answer is final for that pod's volume (the kubelet does not
retry), so only requests that can never succeed are denied; a missing root is
left pending for the next round.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from contract.spiffe import SpiffeId
from injector.mesh import signer
from injector.mesh.signer import IssuancePolicy, RequestDenied
from injector.operator.identity_review import check_pod
from injector.operator.identity_service import TrustView
from injector.operator.kube import Conflict, Kube, KubeError, NotFound

log = logging.getLogger("injector.operator.pod_certificates")
SIGNER_NAME = "sidecar.example.io/mesh"
GROUP_VERSION = "certificates.k8s.io/v1beta1"
PLURAL = "podcertificaterequests"
TERMINAL = ("Issued", "Denied", "Failed")
MIN_LIFETIME = dt.timedelta(hours=1)


async def discover(kube: Kube) -> bool:
    """Whether the API server serves PodCertificateRequests."""
    try:
        found = await kube.request("GET", f"/apis/{GROUP_VERSION}")
    except (NotFound, KubeError):
        return False
    return any(r.get("name") == PLURAL for r in found.get("resources") or [])


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message[:1000],
        "lastTransitionTime": _time(dt.datetime.now(dt.UTC)),
    }


def pending(pcr: dict[str, Any]) -> bool:
    spec = pcr.get("spec") or {}
    conditions = (pcr.get("status") or {}).get("conditions") or []
    return spec.get("signerName") == SIGNER_NAME and not any(
        c.get("type") in TERMINAL for c in conditions
    )


def requested_key(spec: dict[str, Any]) -> object:
    """The public key the kubelet asks a certificate for."""
    try:
        if spec.get("stubPKCS10Request"):
            der = base64.b64decode(spec["stubPKCS10Request"], validate=True)
            return signer.parse_csr(der).public_key()
        der = base64.b64decode(spec.get("pkixPublicKey") or "", validate=True)
        return serialization.load_der_public_key(der)
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:
        raise RequestDenied("BadRequest", f"the request's key is unreadable ({exc})", 400) from None


def answer(
    pcr: dict[str, Any],
    pod: dict[str, Any] | None,
    authority: signer.Authority,
    policy: IssuancePolicy,
) -> dict[str, Any]:
    """The status to write: Issued with the certificate, or Denied/Failed saying why."""
    spec = pcr.get("spec") or {}
    namespace = str((pcr.get("metadata") or {}).get("namespace") or "")
    try:
        mesh = check_pod(
            pod,
            namespace,
            str(spec.get("podName")),
            str(spec.get("serviceAccountName")),
            str(spec.get("podUID")),
            str(spec.get("nodeName")),
        )
        identity = SpiffeId.of(
            str(mesh["trustDomain"]), namespace, str(spec.get("serviceAccountName"))
        )
        key = signer.check_public_key(requested_key(spec))
    except (RequestDenied, ValueError) as exc:
        reason = exc.reason if isinstance(exc, RequestDenied) else "BadRequest"
        return {"conditions": [_condition("Denied", reason, str(exc))]}
    most = dt.timedelta(seconds=int(spec.get("maxExpirationSeconds") or 86400))
    lifetime = min(policy.lifetime, most)
    if lifetime < MIN_LIFETIME:
        message = (
            f"certificates live {lifetime} (--mesh-cert-lifetime / maxExpirationSeconds); Pod "
            "Certificates need at least 1h: raise it, or use the CSR endpoint (issuance: csr)"
        )
        return {"conditions": [_condition("Failed", "LifetimeTooShort", message)]}
    try:
        issued = signer.issue(authority, key, identity, IssuancePolicy(lifetime=lifetime))
    except signer.MeshError as exc:
        return {"conditions": [_condition("Failed", "SignerError", str(exc))]}
    return {
        "conditions": [_condition("Issued", "Issued", f"issued {identity.uri}")],
        "certificateChain": issued.chain_pem.decode(),
        "notBefore": _time(issued.not_before),
        "notAfter": _time(issued.not_after),
        "beginRefreshAt": _time(issued.refresh_at),
    }


class PodCertificateSigner:
    def __init__(self, kube: Kube, view: TrustView, policy: IssuancePolicy) -> None:
        self.kube = kube
        self.view = view
        self.policy = policy

    def _path(self, pcr: dict[str, Any]) -> str:
        meta = pcr.get("metadata") or {}
        return (
            f"/apis/{GROUP_VERSION}/namespaces/{meta.get('namespace')}/{PLURAL}/{meta.get('name')}"
        )

    async def handle(self, pcr: dict[str, Any]) -> None:
        if not pending(pcr) or self.view.state is None:
            return  # not ours, answered, or no root yet: the next round retries
        spec = pcr["spec"]
        namespace = pcr["metadata"]["namespace"]
        pod = await self.kube.get(f"/api/v1/namespaces/{namespace}/pods/{spec.get('podName')}")
        status = answer(pcr, pod, self.view.state.active.authority, self.policy)
        body = {**pcr, "status": status}
        try:
            await self.kube.request("PUT", self._path(pcr) + "/status", body)
        except (Conflict, NotFound):
            return  # changed or gone meanwhile
        verdict = status["conditions"][0]
        log.info(
            "mesh: PodCertificateRequest %s/%s for pod %s: %s (%s)",
            namespace,
            pcr["metadata"].get("name"),
            spec.get("podName"),
            verdict["type"],
            verdict["message"],
        )

    async def sweep(self) -> None:
        """Answer every pending request (a new leader, a missed event)."""
        listing = await self.kube.request("GET", f"/apis/{GROUP_VERSION}/{PLURAL}")
        for pcr in listing.get("items") or []:
            try:
                await self.handle(pcr)
            except KubeError as exc:
                log.warning("mesh: PodCertificateRequest: %s", exc)
