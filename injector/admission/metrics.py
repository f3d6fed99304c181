"""Prometheus metrics of the webhook, in a registry of their own (no globals,
so several apps in one process, e.g. tests, do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# The apiserver's own webhook histogram starts at 5 ms; ours resolves below it.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sidecar_injector_reviews",
            "AdmissionReviews answered, by outcome "
            "(injected, skipped, denied, ignored, bad_request, error)",
            ("outcome",),
            registry=r,
        )
        self.injections = Counter(
            "sidecar_injector_injections", "Pods injected, by role", ("role",), registry=r
        )
        self.skips = Counter(
            "sidecar_injector_skips", "Pods not injected, by reason", ("reason",), registry=r
        )
        self.denials = Counter(
            "sidecar_injector_denials", "Pods denied (invalid annotations, collisions)", registry=r
        )
        self.warnings = Counter(
            "sidecar_injector_warnings", "Admission warnings returned", registry=r
        )
        self.latency = Histogram(
            "sidecar_injector_review_duration_seconds",
            "Time to answer one AdmissionReview (decode to encode)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
