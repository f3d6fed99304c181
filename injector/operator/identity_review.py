"""Who is asking for a certificate: a TokenReview with our audience, bound to the live pod.

``KubeReviewer.review(token, namespace, pod)``:

1. TokenReview with ``audiences: [sidecar.example.io/identity]``: the API
   server must say the token is authentic *and* meant for us (a token for
   another audience, e.g. Vault's, is refused);
2. the token is a service account's and bound to a pod (the projected token
   the injector mounts carries the pod's name and UID; a long-lived Secret
   token does not, and is refused);
3. the pod the request names is the token's pod;
4. the live pod has that UID (a deleted or re-created pod's token is
   refused), runs as that service account, on the token's node, and carries
   the injector's status annotation with a mesh entry (its trust domain).

Every refusal is a ``RequestDenied`` whose message names the pod, what did
not match and the fix; the token itself never appears in a message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from injector.mesh.signer import RequestDenied
from injector.operator.kube import Kube, KubeError, NotFound

AUDIENCE = "sidecar.example.io/identity"
STATUS_ANNOTATION = "sidecar.example.io/status"
SA_PREFIX = "system:serviceaccount:"
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
NODE_NAME = "authentication.kubernetes.io/node-name"


@dataclass(frozen=True)
class Caller:
    """A verified requester: the pod and the identity it may have."""

    namespace: str
    service_account: str
    pod: str
    pod_uid: str
    node: str
    trust_domain: str
    mode: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod}"


class Reviewer(Protocol):
    async def review(self, token: str, namespace: str, pod: str) -> Caller: ...


def mesh_status(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The ``mesh`` entry of the pod's status annotation (None: not meshed)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        status = json.loads(annotations.get(STATUS_ANNOTATION) or "null")
    except ValueError:
        return None
    mesh = status.get("mesh") if isinstance(status, dict) else None
    return mesh if isinstance(mesh, dict) and isinstance(mesh.get("trustDomain"), str) else None


def _first(extra: dict[str, Any], key: str) -> str:
    value = extra.get(key)
    if isinstance(value, list) and value:
        return str(value[0])
    return ""


def check_review(status: dict[str, Any], namespace: str, pod: str) -> tuple[str, str, str]:
    """A TokenReview status -> (service account, pod UID, node), or ``RequestDenied``."""
    if not status.get("authenticated"):
        error = str(status.get("error") or "not authenticated")[:200]
        raise RequestDenied(
            "TokenInvalid",
            f"pod {namespace}/{pod}: the API server refused the token ({error}); the agent "
            "must send the projected token of the sidecar-identity-token volume",
            401,
        )
    if AUDIENCE not in (status.get("audiences") or []):
        raise RequestDenied(
            "AudienceMismatch",
            f"pod {namespace}/{pod}: the token is not for audience {AUDIENCE}; project one with "
            f"that audience (the injector's sidecar-identity-token volume does)",
            401,
        )
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    extra = user.get("extra") or {}
    if not username.startswith(SA_PREFIX) or username.count(":") != 3:
        raise RequestDenied(
            "NotServiceAccount",
            f"pod {namespace}/{pod}: the token is {username or 'anonymous'}'s, not a service "
            "account's",
        )
    token_namespace, account = username[len(SA_PREFIX) :].split(":", 1)
    bound_pod, uid = _first(extra, POD_NAME), _first(extra, POD_UID)
    if not bound_pod or not uid:
        raise RequestDenied(
            "NotBoundToPod",
            f"pod {namespace}/{pod}: the token of {token_namespace}/{account} is not bound to a "
            "pod; use a projected service-account token (the sidecar-identity-token volume)",
        )
    if (token_namespace, bound_pod) != (namespace, pod):
        raise RequestDenied(
            "PodMismatch",
            f"the request names pod {namespace}/{pod} but the token belongs to pod "
            f"{token_namespace}/{bound_pod}; a pod may only ask for its own certificate",
        )
    return account, uid, _first(extra, NODE_NAME)


def check_pod(
    pod: dict[str, Any] | None, namespace: str, name: str, account: str, uid: str, node: str
) -> dict[str, Any]:
    """The pod's mesh entry, once the live pod matches the token."""
    where = f"pod {namespace}/{name}"
    if pod is None:
        raise RequestDenied("PodGone", f"{where} no longer exists; its token is refused")
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    if metadata.get("uid") != uid:
        raise RequestDenied(
            "PodGone",
            f"{where} was deleted (a pod of the same name has another UID); the old pod's "
            "token is refused",
        )
    live_account = spec.get("serviceAccountName") or "default"
    if live_account != account:
        raise RequestDenied(
            "PodMismatch", f"{where} runs as {live_account}, the token is {account}'s"
        )
    if node and spec.get("nodeName") != node:
        raise RequestDenied(
            "PodMismatch",
            f"{where} runs on node {spec.get('nodeName') or '(none)'}, the token was issued "
            f"for node {node}",
        )
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        raise RequestDenied("PodGone", f"{where} has finished; it needs no certificate")
    mesh = mesh_status(pod)
    if mesh is None:
        raise RequestDenied(
            "PodNotInjected",
            f"{where} has no mesh entry in its {STATUS_ANNOTATION} annotation: it was not "
            "injected with mtls on; re-create it (mtls strict or permissive)",
        )
    return mesh


class KubeReviewer:
    """``Reviewer`` against the real API server (TokenReview, then GET the pod)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def review(self, token: str, namespace: str, pod: str) -> Caller:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [AUDIENCE]},
        }
        try:
            answer = await self.kube.request(
                "POST", "/apis/authentication.k8s.io/v1/tokenreviews", body
            )
        except KubeError as exc:
            raise RequestDenied(
                "ReviewUnavailable", f"TokenReview failed: {exc.reason or exc}", 503
            ) from None
        account, uid, node = check_review(answer.get("status") or {}, namespace, pod)
        try:
            live = await self.kube.get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
        except NotFound:
            live = None
        except KubeError as exc:
            raise RequestDenied(
                "ReviewUnavailable", f"reading the pod failed: {exc}", 503
            ) from None
        mesh = check_pod(live, namespace, pod, account, uid, node)
        return Caller(
            namespace,
            account,
            pod,
            uid,
            node,
            str(mesh["trustDomain"]),
            str(mesh.get("mode") or "permissive"),
        )
