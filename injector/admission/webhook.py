"""The FastAPI app: ``POST /mutate``, ``/healthz``, ``/readyz``, ``/metrics``.

A thin shell over ``injector.admission.review``. ``create_app`` takes everything it
needs (nothing is read from the environment or module globals):

* ``settings``: a callable returning the current ``Settings`` (the operator's
  profile store swaps snapshots behind it; read once per review);
* ``namespaces``: name -> ``NamespaceInfo`` (labels), e.g. from a watch cache;
  the default knows no labels;
* ``readiness``: ``() -> (ready, reason)`` for ``/readyz`` (certificates and
  profiles loaded); the default is always ready;
* ``metrics``: a ``Metrics`` (its own Prometheus registry);
* ``failure_policy``: what an internal error answers (``Fail``: deny with the
  error named, ``Ignore``: admit unchanged with a warning). Match the
  MutatingWebhookConfiguration's ``failurePolicy``.

Nothing a client sends produces a 500: malformed reviews get 400 with a
message, oversized bodies 413, and unexpected errors go through the failure
policy inside a 200 AdmissionReview response.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

from injector import __version__
from injector.admission.metrics import Metrics
from injector.admission.review import MAX_BODY, FailurePolicy, Outcome, admit, parse_review
from injector.core.model import NamespaceInfo
from injector.core.settings import Settings
from injector.errors import BadReview

log = logging.getLogger("injector.admission.webhook")
SettingsProvider = Callable[[], Settings]
NamespaceLookup = Callable[[str], NamespaceInfo]
Readiness = Callable[[], tuple[bool, str]]
JSON = "application/json"


def no_labels(name: str) -> NamespaceInfo:
    return NamespaceInfo(name)


def always_ready() -> tuple[bool, str]:
    return True, "ready"


def create_app(
    settings: SettingsProvider,
    *,
    metrics: Metrics | None = None,
    namespaces: NamespaceLookup = no_labels,
    readiness: Readiness = always_ready,
    failure_policy: FailurePolicy = "Fail",
) -> FastAPI:
    app = FastAPI(
        title="sidecar-injector",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    m = metrics if metrics is not None else Metrics()
    app.state.metrics = m

    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        started = time.perf_counter()
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            m.requests.labels("bad_request").inc()
            return _error(413, f"request body is {length} bytes; at most {MAX_BODY} are accepted")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                m.requests.labels("bad_request").inc()
                return _error(413, f"request body exceeds {MAX_BODY} bytes")
        try:
            review = parse_review(bytes(body))
        except BadReview as exc:
            m.requests.labels("bad_request").inc()
            return _error(400, str(exc))
        try:
            outcome = admit(
                review, settings(), namespaces(review.namespace), failure_policy=failure_policy
            )
        except Exception as exc:  # the settings or namespace provider failed
            log.exception("review %s: provider failed", review.uid)
            outcome = _provider_failure(review.uid, exc, failure_policy)
        _count(m, outcome)
        m.latency.observe(time.perf_counter() - started)
        return Response(outcome.to_json(), media_type=JSON)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/readyz")
    async def readyz() -> Response:
        try:
            ready, reason = readiness()
        except Exception as exc:
            ready, reason = False, f"readiness check failed: {exc}"
        body = json.dumps({"ready": ready, "reason": reason}).encode()
        return Response(body, status_code=200 if ready else 503, media_type=JSON)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(m.render(), media_type=m.content_type)

    return app


def _error(code: int, message: str) -> Response:
    return Response(json.dumps({"message": message}).encode(), status_code=code, media_type=JSON)


def _provider_failure(uid: str, exc: Exception, policy: FailurePolicy) -> Outcome:
    what = f"sidecar-injector cannot read its settings ({type(exc).__name__})"
    if policy == "Ignore":
        return Outcome(uid, True, "error", warnings=(f"{what}; admitted without sidecars",))
    return Outcome(uid, False, "error", message=f"{what}; see the injector's logs", code=500)


def _count(m: Metrics, outcome: Outcome) -> None:
    m.requests.labels(outcome.result).inc()
    if outcome.result == "injected":
        for role in outcome.roles:
            m.injections.labels(role).inc()
    elif outcome.result == "skipped" and outcome.skip_reason:
        m.skips.labels(outcome.skip_reason).inc()
    elif outcome.result == "denied":
        m.denials.inc()
    if outcome.warnings:
        m.warnings.inc(len(outcome.warnings))
