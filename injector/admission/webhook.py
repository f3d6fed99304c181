"""The webhook's routes: ``POST /mutate``, ``GET /healthz``, ``/readyz``, ``/metrics``.

A thin shell over ``injector.admission.review``, called by the HTTP server
(``injector.admission.http``) as ``webhook(method, path, body)``. Everything
it needs is handed in (nothing read from the environment or globals):

* ``settings``: a callable returning the current ``Settings`` (read once per
  review; the operator's profile store swaps snapshots behind it);
* ``namespaces``: name -> ``NamespaceInfo`` (labels), e.g. a watch cache;
* ``readiness``: ``() -> (ready, reason)`` for ``/readyz``;
* ``metrics``: a ``Metrics``;
* ``failure_policy``: what an internal error answers (``Fail``: deny with the
  error named, ``Ignore``: admit unchanged with a warning); match the
  MutatingWebhookConfiguration's ``failurePolicy``;
* ``offload``: where a review whose pod is over ``offload_above`` bytes is
  computed (another process), so a huge pod never holds this event loop; its
  answer is awaited at most ``offload_timeout`` seconds, then the review is
  answered under the failure policy.

Nothing a client sends produces a 500: a malformed review is a 400 with a
message; an injector failure while reading settings, rendering, patching or
encoding is answered under the failure policy inside a 200, counted in
``sidecar_injector_internal_errors_total{stage}`` and logged once, without
the pod.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from injector.admission.http import JSON, Response, error_body
from injector.admission.metrics import CONTENT_TYPE, Metrics
from injector.admission.review import (
    FailurePolicy,
    Outcome,
    Review,
    admit,
    failed,
    parse_review,
)
from injector.core.model import NamespaceInfo, has_ours
from injector.core.settings import Settings
from injector.errors import BadReview

log = logging.getLogger("injector.admission.webhook")
SettingsProvider = Callable[[], Settings]
NamespaceLookup = Callable[[str], NamespaceInfo]
Readiness = Callable[[], tuple[bool, str]]
OFFLOAD_ABOVE = 256 * 1024  # a pod this large is reviewed in another process


@dataclass(frozen=True)
class Answer:
    """What an offloaded review sends back: the HTTP answer and what to count."""

    status: int
    body: bytes
    outcome: Outcome | None


Offload = Callable[[bytes], Awaitable[Answer]]


def no_labels(name: str) -> NamespaceInfo:
    return NamespaceInfo(name)


def always_ready() -> tuple[bool, str]:
    return True, "ready"


class Webhook:
    def __init__(
        self,
        settings: SettingsProvider,
        *,
        metrics: Metrics | None = None,
        namespaces: NamespaceLookup = no_labels,
        readiness: Readiness = always_ready,
        failure_policy: FailurePolicy = "Fail",
        offload: Offload | None = None,
        offload_above: int = OFFLOAD_ABOVE,
        offload_timeout: float = 2.0,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.namespaces = namespaces
        self.readiness = readiness
        self.failure_policy = failure_policy
        self.offload = offload
        self.offload_above = offload_above
        self.offload_timeout = offload_timeout

    def __call__(self, method: str, path: str, body: bytes) -> Response | Awaitable[Response]:
        if path == "/mutate":
            if method != "POST":
                return 405, JSON, error_body("/mutate takes POST with an AdmissionReview")
            return self.mutate(body)
        if method not in ("GET", "HEAD"):
            return 405, JSON, error_body(f"{path} takes GET")
        if path == "/healthz":
            return 200, JSON, b'{"status":"ok"}'
        if path == "/readyz":
            return self.ready()
        if path == "/metrics":
            return 200, CONTENT_TYPE, self.metrics.render()
        return 404, JSON, error_body(f"no route {path}; try /mutate, /healthz, /readyz, /metrics")

    def ready(self) -> Response:
        try:
            ready, reason = self.readiness()
        except Exception as exc:
            ready, reason = False, f"readiness check failed: {exc}"
        body = json.dumps({"ready": ready, "reason": reason}).encode()
        return (200 if ready else 503), JSON, body

    # --- /mutate --------------------------------------------------------------------
    def mutate(self, body: bytes) -> Response | Awaitable[Response]:
        started = time.perf_counter()
        try:
            review = parse_review(body)
        except BadReview as exc:
            return self._bad(str(exc))
        except Exception as exc:  # a decoder bug: no uid to answer under the policy
            log.error("reading a review failed (%s)", type(exc).__name__, exc_info=True)
            self.metrics.add("sidecar_injector_internal_errors_total", "decode")
            return self._bad(f"the review could not be read ({type(exc).__name__})")
        offloaded = self._offloaded(review)
        if log.isEnabledFor(logging.DEBUG):
            where = "the supervisor" if offloaded else "this worker"
            log.debug("review %s: %d bytes, reviewed by %s", review.uid, len(body), where)
        if offloaded:
            return self._elsewhere(review, body, started)
        return self.answer(review, started)

    def _offloaded(self, review: Review) -> bool:
        """A pod over ``offload_above`` bytes that may be injected."""
        body = review.body
        if self.offload is None or body is None or len(body) <= self.offload_above:
            return False
        if has_ours(review.annotations):
            return True
        try:
            return self.namespaces(review.namespace).injection_default()[0] is not None
        except Exception:
            return True

    def answer(self, review: Review, started: float) -> Response:
        """Decide and encode one parsed review, counting it (never raises)."""
        try:
            outcome, data = self.respond(review)
        except BadReview as exc:
            return self._bad(str(exc))
        self.count(outcome, time.perf_counter() - started)
        return 200, JSON, data

    def respond(self, review: Review) -> tuple[Outcome, bytes]:
        """The outcome and its encoding (``BadReview`` for a malformed pod)."""
        outcome = self.decide(review)
        try:
            return outcome, outcome.to_json()
        except Exception as exc:
            outcome = failed(review.uid, exc, "encode", self.failure_policy)
            return outcome, outcome.to_json()

    def decide(self, review: Review) -> Outcome:
        try:
            settings, namespace = self.settings(), self.namespaces(review.namespace)
        except Exception as exc:
            return failed(review.uid, exc, "settings", self.failure_policy)
        try:
            return admit(review, settings, namespace, failure_policy=self.failure_policy)
        except BadReview:
            raise
        except Exception as exc:  # admit answers its own failures; this is a last resort
            return failed(review.uid, exc, "render", self.failure_policy)

    async def _elsewhere(self, review: Review, body: bytes, started: float) -> Response:
        assert self.offload is not None
        try:
            answer = await asyncio.wait_for(self.offload(body), self.offload_timeout)
        except Exception as exc:
            outcome = failed(review.uid, exc, "offload", self.failure_policy)
            self.count(outcome, time.perf_counter() - started)
            return 200, JSON, outcome.to_json()
        if answer.outcome is None:
            self.metrics.add("sidecar_injector_reviews_total", "bad_request")
            self.metrics.add("sidecar_injector_http_refused_total", str(answer.status))
        else:
            self.count(answer.outcome, time.perf_counter() - started)
        return answer.status, JSON, answer.body

    def _bad(self, message: str) -> Response:
        self.metrics.add("sidecar_injector_reviews_total", "bad_request")
        self.metrics.add("sidecar_injector_http_refused_total", "400")
        return 400, JSON, error_body(message)

    def count(self, outcome: Outcome, seconds: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("review %s: %s in %.1f ms", outcome.uid, outcome.result, seconds * 1000)
        m = self.metrics
        m.add("sidecar_injector_reviews_total", outcome.result)
        if outcome.result == "injected":
            for role in outcome.roles:
                m.add("sidecar_injector_injections_total", role)
        elif outcome.result == "skipped" and outcome.skip_reason:
            m.add("sidecar_injector_skips_total", outcome.skip_reason)
        elif outcome.result == "denied":
            m.add("sidecar_injector_denials_total")
        elif outcome.result == "error" and outcome.stage:
            m.add("sidecar_injector_internal_errors_total", outcome.stage)
        if outcome.warnings:
            m.add("sidecar_injector_warnings_total", amount=len(outcome.warnings))
        m.observe(seconds)

    def review_elsewhere(self, body: bytes) -> Answer:
        """What an offload target runs for one body (the same code, no counting)."""
        try:
            outcome, data = self.respond(parse_review(body))
            return Answer(200, data, outcome)
        except BadReview as exc:
            return Answer(400, error_body(str(exc)), None)
        except Exception as exc:
            log.error("an offloaded review failed (%s)", type(exc).__name__, exc_info=True)
            return Answer(400, error_body(f"the review failed ({type(exc).__name__})"), None)
