"""The webhook's metrics: counters in one flat array of float64 slots.

Every label value is known in advance (outcomes, roles, skip reasons, HTTP
refusals, failing stages), so each series is a fixed slot and counting is
one array write, with no lock and no allocation. With several worker
processes the array lives in an anonymous shared mapping made before they
fork: each process adds to its own row (``use_row``) and ``render`` sums
the rows, so any process answers ``/metrics`` for all of them. No globals:
several instances in one process (tests) do not collide. Collectors
registered in ``registry`` (the operator's, in the supervisor process) are
rendered after the counters by that process: on ``--metrics-listen``.
"""

from __future__ import annotations

import mmap
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest

from contract.catalogue import ROLE_NAMES as ROLES
from injector.core import plan

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The apiserver's own webhook histogram starts at 5 ms; ours resolves below it.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
OUTCOMES = ("injected", "skipped", "denied", "ignored", "bad_request", "error")
SKIP_REASONS = (
    plan.NOT_REQUESTED,
    plan.INJECT_FALSE,
    plan.NAMESPACE_DISABLED,
    plan.HOST_NETWORK,
    plan.SYSTEM_NAMESPACE,
    plan.INJECTOR_POD,
    "other",
)
REFUSALS = ("400", "408", "413", "429", "431", "503")
STAGES = ("settings", "decode", "render", "patch", "encode", "offload")

# (metric, label name, label values, help); label None: one series.
FAMILIES: tuple[tuple[str, str | None, tuple[str, ...], str], ...] = (
    (
        "sidecar_injector_reviews_total",
        "outcome",
        OUTCOMES,
        "AdmissionReviews answered, by outcome (injected, skipped, denied, ignored, "
        "bad_request, error)",
    ),
    ("sidecar_injector_injections_total", "role", (*ROLES, "other"), "Pods injected, by role"),
    ("sidecar_injector_skips_total", "reason", SKIP_REASONS, "Pods not injected, by reason"),
    (
        "sidecar_injector_denials_total",
        None,
        ("",),
        "Pods denied (invalid annotations, collisions, limits)",
    ),
    ("sidecar_injector_warnings_total", None, ("",), "Admission warnings returned"),
    (
        "sidecar_injector_internal_errors_total",
        "stage",
        STAGES,
        "Reviews answered under the failure policy because the injector failed, by stage",
    ),
    (
        "sidecar_injector_http_refused_total",
        "code",
        REFUSALS,
        "HTTP requests refused before a review: malformed, too slow, too large, too many",
    ),
)
HISTOGRAM = "sidecar_injector_review_duration_seconds"


class Metrics:
    def __init__(self, processes: int = 1) -> None:
        self.index: dict[tuple[str, str], int] = {}
        for name, _, values, _ in FAMILIES:
            for value in values:
                self.index[name, value] = len(self.index)
        self.bucket_base = len(self.index)
        self.width = self.bucket_base + len(LATENCY_BUCKETS) + 2  # buckets, +Inf, sum
        self.rows = processes
        self.memory = mmap.mmap(-1, 8 * self.width * processes)
        self.slots = memoryview(self.memory).cast("d")
        self.base = 0
        # Collectors of the supervisor process (the operator's, the mesh's): shown
        # with the counters by whoever renders in that process (--metrics-listen).
        self.registry = CollectorRegistry()

    def use_row(self, row: int) -> None:
        """This process counts in row ``row`` (a worker's number) from now on."""
        if not 0 <= row < self.rows:
            raise ValueError(f"row {row} outside 0..{self.rows - 1}")
        self.base = row * self.width

    def add(self, name: str, value: str = "", amount: float = 1.0) -> None:
        slot = self.index.get((name, value))
        if slot is None:
            slot = self.index.get((name, "other"))
            if slot is None:
                return
        self.slots[self.base + slot] += amount

    def observe(self, seconds: float) -> None:
        base = self.base + self.bucket_base
        self.slots[base + bisect_left(LATENCY_BUCKETS, seconds)] += 1.0
        self.slots[base + len(LATENCY_BUCKETS) + 1] += seconds

    def get(self, name: str, value: str = "") -> float:
        """The sum over every process of one series (tests, the bench)."""
        return self._total(self.index[name, value])

    def _total(self, slot: int) -> float:
        return sum(self.slots[row * self.width + slot] for row in range(self.rows))

    def render(self) -> bytes:
        lines: list[str] = []
        for name, label, values, help_text in FAMILIES:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for value in values:
                total = self._total(self.index[name, value])
                series = f'{name}{{{label}="{value}"}}' if label else name
                lines.append(f"{series} {total!r}")
        lines += self._histogram()
        return ("\n".join(lines) + "\n").encode() + generate_latest(self.registry)

    def _histogram(self) -> Iterable[str]:
        counts = [self._total(self.bucket_base + i) for i in range(len(LATENCY_BUCKETS) + 1)]
        total_seconds = self._total(self.bucket_base + len(LATENCY_BUCKETS) + 1)
        yield f"# HELP {HISTOGRAM} Time to answer one AdmissionReview (decode to encode)"
        yield f"# TYPE {HISTOGRAM} histogram"
        running = 0.0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            yield f'{HISTOGRAM}_bucket{{le="{le}"}} {running!r}'
        yield f"{HISTOGRAM}_sum {total_seconds!r}"
        yield f"{HISTOGRAM}_count {running!r}"
