"""Every annotation the injector reads, given hostile values: each review is
answered (200, allowed or denied with a bounded message), never an internal
error, never a 500. A 310-digit duration once gave "internal error
(OverflowError)"; the webhook's internal-error counter proves it is gone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contract.catalogue import ANNOTATIONS, FIXED_KEYS
from injector.admission.limits import MAX_MESSAGE_CHARS, MAX_WARNING_CHARS
from injector.admission.metrics import STAGES, Metrics
from injector.admission.webhook import Webhook
from injector.core.specs import settings_from_spec
from tests.golden_tool import BASE_SETTINGS
from tests.injector.reviews import review
from tests.injector.served import Served

P = "sidecar.example.io/"
KEYS = sorted({*FIXED_KEYS, "secret-db", "secret-template-db"} - {"inject"})
HOSTILE = [
    "9" * 310 + "s",
    "9" * 310 + "/s",
    "9" * 5000,
    "1e400",
    "-1",
    "NaN",
    "inf",
    "0x10",
    "\x00",
    "a\r\nX-Injected: 1",
    "\u202e" + "é" * 1000,
    " " * 64,
    "x" * 100_000,
    "{{ data }}" * 1000,
    "signal:SIGKILL:" + "p" * 5000,
    "http://" + "h" * 70_000 + ":80",
    "configmap:" + "a" * 300,
]


def test_every_annotation_is_exercised() -> None:
    assert len(KEYS) >= len([a for a in ANNOTATIONS if "<role>" not in (a.annotation or "")]) - 1


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[Served, Metrics]]:
    metrics = Metrics()
    with Served(Webhook(lambda: settings_from_spec(BASE_SETTINGS), metrics=metrics)) as c:
        yield c, metrics


@pytest.mark.parametrize("key", KEYS)
def test_hostile_values_are_answered(client: tuple[Served, Metrics], key: str) -> None:
    served, metrics = client
    for value in HOSTILE:
        pod = {
            "metadata": {"name": "p", "annotations": {P + "inject": "true", P + key: value}},
            "spec": {
                "containers": [{"name": "app", "image": "a", "ports": [{"containerPort": 80}]}]
            },
        }
        response = served.post("/mutate", json=review(pod))
        assert response.status_code == 200, (key, value[:40], response.text[:300])
        answer = response.json()["response"]
        message = answer.get("status", {}).get("message", "")
        assert "internal error" not in message, (key, value[:40], message[:300])
        assert len(message) <= MAX_MESSAGE_CHARS + 40
        assert all(len(w) <= MAX_WARNING_CHARS for w in answer.get("warnings", []))
    errors = sum(metrics.get("sidecar_injector_internal_errors_total", s) for s in STAGES)
    assert errors == 0
