"""AdmissionReview v1: decode the envelope, decide, encode the answer.

Decoding is in two steps (msgspec, typed): the envelope and the pod's
annotations first, skipping everything else without building it; the whole
pod only when injection can happen (our annotations, or a namespace that
enables it). So a pod the injector does not touch costs one pass over the
bytes. A malformed review raises ``BadReview`` (HTTP 400) naming the field,
including JSON nested too deep to decode.

Before rendering, the lists a review walks are capped (``limits.LIMITS``): a pod
past a cap is denied with a message naming the list, its length and the cap,
so every step stays linear and bounded. ``admit`` is pure given its settings
and namespace; the webhook adds metrics and timing around it.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from contract.layout import PREFIX
from injector.admission.limits import capped_message, capped_warnings, check_limits
from injector.core.model import NamespaceInfo, has_ours, opted_out
from injector.core.patch import make_patch
from injector.core.plan import INJECT_FALSE, NOT_REQUESTED
from injector.core.pods import check_pod
from injector.core.render import render
from injector.core.settings import Settings
from injector.core.views import Pod
from injector.errors import BadReview, InjectionDenied, NotAPod

log = logging.getLogger("injector.admission.review")
API_VERSION = "admission.k8s.io/v1"
MAX_BODY = 3 * 1024 * 1024  # the apiserver's own request size limit
FailurePolicy = Literal["Fail", "Ignore"]


class _Kind(msgspec.Struct):
    group: str = ""
    version: str = ""
    kind: str = ""


class _Resource(msgspec.Struct):
    group: str = ""
    version: str = ""
    resource: str = ""


class _Metadata(msgspec.Struct):
    annotations: dict[str, str] | None = None
    namespace: str | None = None


class _ObjectHead(msgspec.Struct):
    metadata: _Metadata | None = None


class _Request(msgspec.Struct, rename="camel"):
    uid: str = ""
    kind: _Kind | None = None
    resource: _Resource | None = None
    sub_resource: str | None = None
    operation: str | None = None
    namespace: str | None = None
    dry_run: bool | None = None
    object: Any = None  # decoded as _ObjectHead by the first pass: only the metadata


class _Envelope(msgspec.Struct, rename="camel"):
    kind: Any = None
    api_version: Any = None
    request: _Request | None = None


class _HeadRequest(_Request, rename="camel"):
    object: _ObjectHead | None = None


class _HeadEnvelope(_Envelope, rename="camel"):
    request: _HeadRequest | None = None


class _PodRequest(msgspec.Struct):
    object: Any = None


class _PodEnvelope(msgspec.Struct):
    request: _PodRequest | None = None


_ENVELOPE = msgspec.json.Decoder(_HeadEnvelope)  # one pass, skipping all but the head
_WHOLE = msgspec.json.Decoder(_Envelope)  # one pass, the pod decoded whole
_PREFIX_BYTES = PREFIX.encode()
_HEAD_BYTES = 4096  # where a pod's annotations are looked for before decoding
_POD = msgspec.json.Decoder(_PodEnvelope)  # the second pass, when injection may happen
_ENCODER = msgspec.json.Encoder()


@dataclass
class Review:
    uid: str
    kind: str
    group: str
    resource: str
    sub_resource: str
    operation: str
    namespace: str
    dry_run: bool
    annotations: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None  # the review, for the pod (CREATE of a Pod) decoded on demand
    _pod: Pod | None = None
    _document: Any = None  # the pod, when the first pass decoded it whole

    @property
    def is_pod_create(self) -> bool:
        return self.body is not None

    def document(self) -> Any:
        """The pod as sent (plain JSON values): ``BadReview`` if not JSON."""
        if self._document is not None:
            return self._document
        assert self.body is not None
        envelope: _PodEnvelope = _decode(_POD, self.body, "request body")
        return envelope.request.object if envelope.request is not None else None

    @property
    def pod(self) -> Pod | None:
        """The whole pod, decoded and type-checked once (``BadReview`` if malformed)."""
        if self._pod is None and self.body is not None:
            self._pod = _check_pod(self.document())
        return self._pod


Result = Literal["injected", "skipped", "denied", "ignored", "error"]


@dataclass(frozen=True)
class Outcome:
    uid: str
    allowed: bool
    result: Result
    patch: list[dict[str, Any]] | None = None
    warnings: tuple[str, ...] = ()
    message: str | None = None
    code: int | None = None
    roles: tuple[str, ...] = ()
    skip_reason: str | None = None
    stage: str | None = None  # where an internal error happened

    def to_json(self) -> bytes:
        response: dict[str, Any] = {"uid": self.uid, "allowed": self.allowed}
        if self.patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = _ENCODER.encode(self.patch)  # bytes: written as base64
        if self.warnings:
            response["warnings"] = capped_warnings(self.warnings)
        if self.message is not None:
            response["status"] = {"code": self.code or 403, "message": capped_message(self.message)}
        review = {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
        return _ENCODER.encode(review)


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes, where: str) -> Any:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, _, path = text.partition(" - at `$")
        location = path.rstrip("`").lstrip(".")
        if not location:
            problem = f"{where} is not a JSON object ({message}); send an AdmissionReview"
        else:
            problem = f"{location}: {message}"
        raise BadReview(problem) from None
    except msgspec.DecodeError as exc:
        raise BadReview(f"{where} is not JSON: {exc}; send an AdmissionReview") from None
    except RecursionError:
        raise BadReview(f"{where}: JSON nested too deep; send an AdmissionReview") from None


def parse_review(body: bytes) -> Review:
    if len(body) > MAX_BODY:
        raise BadReview(f"request body is {len(body)} bytes; at most {MAX_BODY} are accepted")
    # A body that spells our prefix is most likely a pod to inject: decode it whole
    # in one pass; any other skims past the pod (an escaped prefix only costs
    # the second pass, never a wrong answer). Only the head is searched: the
    # annotations come before the spec, and a search through 17 KB of a pod
    # costs ~12 us (common letters); a prefix further on costs the second pass.
    whole = body.find(_PREFIX_BYTES, 0, _HEAD_BYTES) >= 0
    envelope: _Envelope = _decode(_WHOLE if whole else _ENVELOPE, body, "request body")
    if envelope.kind != "AdmissionReview" or envelope.api_version != API_VERSION:
        raise BadReview(
            f"expected kind AdmissionReview, apiVersion {API_VERSION}; got kind "
            f"{_short(envelope.kind)}, apiVersion {_short(envelope.api_version)}"
        )
    request = envelope.request
    if request is None:
        raise BadReview("AdmissionReview has no request object")
    if not request.uid:
        raise BadReview("AdmissionReview request.uid is missing or not a string")
    if request.kind is None or request.resource is None:
        raise BadReview("AdmissionReview request.kind/resource is missing or not an object")
    if request.operation is None:
        raise BadReview("AdmissionReview request.operation is missing or not a string")
    kind, sub_resource = request.kind, request.sub_resource or ""
    is_pod = kind.kind == "Pod" and kind.group == "" and not sub_resource
    review = Review(
        uid=request.uid,
        kind=kind.kind,
        group=kind.group,
        resource=request.resource.resource,
        sub_resource=sub_resource,
        operation=request.operation,
        namespace=request.namespace or "",
        dry_run=bool(request.dry_run),
    )
    if is_pod and request.operation == "CREATE":
        if request.object is None:
            raise BadReview("AdmissionReview request.object is not a Pod object")
        review.body = body
        if whole:
            annotations, namespace = _head(request.object)
            review._document = request.object
        else:
            metadata = request.object.metadata or _Metadata()
            annotations, namespace = metadata.annotations or {}, metadata.namespace
        review.annotations = annotations
        if not review.namespace:
            review.namespace = namespace or "default"
    return review


def _head(obj: Any) -> tuple[dict[str, str], str | None]:
    """The annotations and namespace of a pod decoded whole (checked as the skim does)."""
    if not isinstance(obj, dict):
        raise BadReview("AdmissionReview request.object is not a Pod object")
    metadata = obj.get("metadata")
    if metadata is None:
        return {}, None
    if not isinstance(metadata, dict):
        raise BadReview("request.object.metadata: expected an object")
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        raise BadReview("request.object.metadata.annotations: expected a map of strings")
    namespace = metadata.get("namespace")
    return annotations, namespace if isinstance(namespace, str) else None


def admit(
    review: Review,
    settings: Settings,
    namespace: NamespaceInfo,
    failure_policy: FailurePolicy = "Fail",
) -> Outcome:
    """The answer to one review. Raises ``BadReview`` only when a pod that may
    be injected turns out malformed; every other failure is an ``Outcome``."""
    if not review.is_pod_create:
        return Outcome(review.uid, True, "ignored")
    if not has_ours(review.annotations) and namespace.injection_default()[0] is None:
        return Outcome(review.uid, True, "skipped", skip_reason=NOT_REQUESTED)
    if opted_out(review.annotations):
        # Decided before the limits: a pod that opts out is never denied for its size.
        return Outcome(review.uid, True, "skipped", skip_reason=INJECT_FALSE)
    document = review.document()
    try:
        check_limits(document, review.annotations)
    except InjectionDenied as exc:
        return Outcome(review.uid, False, "denied", message=str(exc), code=403)
    pod = review._pod = _check_pod(document)
    stage = "render"
    try:
        result = render(pod, namespace, settings)
        if result.skip is not None:
            return Outcome(
                review.uid,
                True,
                "skipped",
                warnings=result.warnings,
                skip_reason=result.skip.reason,
            )
        stage = "patch"
        patch = make_patch(pod, result.pod)
    except InjectionDenied as exc:
        return Outcome(
            review.uid, False, "denied", message=str(exc), code=403, warnings=exc.warnings
        )
    except Exception as exc:  # an injector bug: decided by the failure policy
        return failed(review.uid, exc, stage, failure_policy)
    return Outcome(
        review.uid, True, "injected", patch=patch, warnings=result.warnings, roles=result.roles
    )


def failed(uid: str, exc: BaseException, stage: str, policy: FailurePolicy) -> Outcome:
    """An injector failure answered under the failure policy, logged once
    with where it happened (the traceback's frames) but without the pod: the
    review's uid names it, and the exception's message, which may quote the
    pod (``KeyError('a-key-from-the-pod')``), is withheld."""
    log.error(
        "review %s: %s failed (%s, message withheld: it may quote the pod); answered under "
        "failurePolicy %s\n%s",
        uid,
        stage,
        type(exc).__name__,
        policy,
        "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
    )
    if stage == "settings":
        what = f"sidecar-injector cannot read its settings ({type(exc).__name__})"
    else:
        what = f"sidecar-injector internal error ({type(exc).__name__}) in {stage}"
    if policy == "Ignore":
        return Outcome(
            uid,
            True,
            "error",
            warnings=(f"{what}; the pod was admitted without sidecars",),
            stage=stage,
        )
    return Outcome(
        uid, False, "error", message=f"{what}; see the injector's logs", code=500, stage=stage
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_pod(document: Any) -> Pod:
    try:
        return check_pod(document, "request.object")  # the shape inject checks too
    except NotAPod as exc:
        raise BadReview(str(exc)) from None
