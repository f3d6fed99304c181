"""AdmissionReview v1: decode the envelope, decide, encode the answer.

Only the envelope is validated (and the few pod fields render reads are
type-checked); the pod is left as plain dicts from ``json.loads``. A malformed
review raises ``BadReview`` (HTTP 400). ``admit`` is pure given its settings
and namespace: the webhook adds metrics and timing around it.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from injector.core.model import NamespaceInfo, has_ours
from injector.core.patch import make_patch
from injector.core.plan import NOT_REQUESTED
from injector.core.pods import check_pod
from injector.core.render import render
from injector.core.settings import Settings
from injector.errors import BadReview, InjectionDenied, NotAPod

log = logging.getLogger("injector.admission.review")
API_VERSION = "admission.k8s.io/v1"
MAX_BODY = 3 * 1024 * 1024  # the apiserver's own request size limit
FailurePolicy = Literal["Fail", "Ignore"]


@dataclass(frozen=True)
class Review:
    uid: str
    kind: str
    group: str
    resource: str
    sub_resource: str
    operation: str
    namespace: str
    pod: Mapping[str, Any] | None
    dry_run: bool


@dataclass(frozen=True)
class Outcome:
    uid: str
    allowed: bool
    result: str  # injected, skipped, denied, ignored, error
    patch: list[dict[str, Any]] | None = None
    warnings: tuple[str, ...] = ()
    message: str | None = None
    code: int | None = None
    roles: tuple[str, ...] = ()
    skip_reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        response: dict[str, Any] = {"uid": self.uid, "allowed": self.allowed}
        if self.patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(
                json.dumps(self.patch, separators=(",", ":")).encode()
            ).decode()
        if self.warnings:
            response["warnings"] = list(self.warnings)
        if self.message is not None:
            response["status"] = {"code": self.code or 403, "message": self.message}
        review = {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
        return json.dumps(review, separators=(",", ":")).encode()


def parse_review(body: bytes) -> Review:
    if len(body) > MAX_BODY:
        raise BadReview(f"request body is {len(body)} bytes; at most {MAX_BODY} are accepted")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadReview(f"request body is not JSON: {exc}; send an AdmissionReview") from None
    if not isinstance(document, dict):
        raise BadReview("request body is not a JSON object; send an AdmissionReview")
    if document.get("kind") != "AdmissionReview" or document.get("apiVersion") != API_VERSION:
        raise BadReview(
            f"expected kind AdmissionReview, apiVersion {API_VERSION}; got kind "
            f"{_short(document.get('kind'))}, apiVersion {_short(document.get('apiVersion'))}"
        )
    request = document.get("request")
    if not isinstance(request, dict):
        raise BadReview("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("AdmissionReview request.uid is missing or not a string")
    kind = _dict(request, "kind")
    resource = _dict(request, "resource")
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise BadReview("AdmissionReview request.operation is missing or not a string")
    namespace = request.get("namespace") or ""
    dry_run = request.get("dryRun", False)
    if not isinstance(namespace, str) or not isinstance(dry_run, bool):
        raise BadReview("AdmissionReview request.namespace/dryRun have the wrong type")
    sub_resource = request.get("subResource") or ""
    obj = request.get("object")
    is_pod = kind.get("kind") == "Pod" and kind.get("group", "") == "" and not sub_resource
    pod: Mapping[str, Any] | None = None
    if is_pod and operation == "CREATE":
        try:
            pod = check_pod(obj, "request.object")  # the shape inject checks too
        except NotAPod as exc:
            raise BadReview(str(exc)) from None
        if not namespace:
            namespace = _namespace_of(pod)
    return Review(
        uid=uid,
        kind=str(kind.get("kind", "")),
        group=str(kind.get("group", "")),
        resource=str(resource.get("resource", "")),
        sub_resource=str(sub_resource),
        operation=operation,
        namespace=namespace,
        pod=pod,
        dry_run=dry_run,
    )


def admit(
    review: Review,
    settings: Settings,
    namespace: NamespaceInfo,
    failure_policy: FailurePolicy = "Fail",
) -> Outcome:
    """The answer to one review. Never raises for a parsed review."""
    if review.pod is None:
        return Outcome(review.uid, True, "ignored")
    pod = review.pod
    annotations = pod.get("metadata", {}).get("annotations") or {}
    if not has_ours(annotations) and namespace.injection_default()[0] is None:
        return Outcome(review.uid, True, "skipped", skip_reason=NOT_REQUESTED)
    try:
        result = render(pod, namespace, settings)
    except InjectionDenied as exc:
        return Outcome(
            review.uid, False, "denied", message=str(exc), code=403, warnings=exc.warnings
        )
    except Exception as exc:  # an injector bug: decided by the failure policy
        log.exception("rendering failed for review %s", review.uid)
        what = f"sidecar-injector internal error ({type(exc).__name__})"
        if failure_policy == "Ignore":
            return Outcome(
                review.uid,
                True,
                "error",
                warnings=(f"{what}; the pod was admitted without sidecars",),
            )
        return Outcome(
            review.uid, False, "error", message=f"{what}; see the injector's logs", code=500
        )
    if result.skip is not None:
        return Outcome(
            review.uid, True, "skipped", warnings=result.warnings, skip_reason=result.skip.reason
        )
    return Outcome(
        review.uid,
        True,
        "injected",
        patch=make_patch(pod, result.pod),
        warnings=result.warnings,
        roles=result.roles,
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dict(request: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = request.get(key)
    if not isinstance(value, dict):
        raise BadReview(f"AdmissionReview request.{key} is missing or not an object")
    return value


def _namespace_of(pod: Mapping[str, Any]) -> str:
    value = pod.get("metadata", {}).get("namespace")
    return value if isinstance(value, str) and value else "default"
