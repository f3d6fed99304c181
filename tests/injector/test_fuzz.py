"""Property: nothing a client sends to /mutate produces a 500 or an internal
error. Every answer is 200 (an AdmissionReview), 400 or 413 with a message,
and the webhook's internal-error counter stays at zero: an injector failure
answered under the failure policy would still be a 200, so the status code
alone cannot tell (a KeyError planted in render() left the old check green).
The last test plants that fault and shows this check catches it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from injector.admission import review as review_module
from injector.admission.metrics import STAGES, Metrics
from injector.admission.review import MAX_BODY
from injector.admission.webhook import Webhook
from injector.core.specs import settings_from_spec
from tests.golden_tool import BASE_SETTINGS
from tests.injector.reviews import review
from tests.injector.served import Served

P = "sidecar.example.io/"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
annotation_keys = st.sampled_from(
    [
        "inject",
        "proxy",
        "proxy-upstream",
        "proxy-inbound-port",
        "proxy-timeout",
        "proxy-rate-limit",
        "secret-db",
        "secret-template-db",
        "config-source",
        "reload",
        "containers",
        "native-sidecars",
        "status",
        "proxy-cpu",
        "proxy-image",
        "profile",
        "secrets-mode",
    ]
)
annotation_maps = st.dictionaries(
    annotation_keys.map(lambda k: P + k),
    st.text(max_size=30) | st.sampled_from(["true", "false", "http://x:80", "1s", "signal:HUP"]),
    max_size=6,
)


class Fuzzed(Served):
    def __init__(self) -> None:
        self.metrics = Metrics()
        super().__init__(Webhook(lambda: settings_from_spec(BASE_SETTINGS), metrics=self.metrics))

    def internal_errors(self) -> float:
        return sum(
            self.metrics.get("sidecar_injector_internal_errors_total", stage) for stage in STAGES
        )


@pytest.fixture(scope="module")
def client() -> Iterator[Fuzzed]:
    with Fuzzed() as c:
        yield c


def check(client: Fuzzed, body: bytes) -> None:
    response = client.post("/mutate", content=body)
    assert response.status_code in (200, 400, 413), response.text
    data = response.json()
    if response.status_code == 200:
        answer = data["response"]
        assert isinstance(answer["allowed"], bool)
        said = " ".join([*answer.get("warnings", []), answer.get("status", {}).get("message", "")])
        assert "internal error" not in said, said
    else:
        assert data["message"]
    assert client.internal_errors() == 0, "an injector failure was answered under the policy"


def base_pod(annotations: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "a", "ports": [{"containerPort": 80}]}]},
    }


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(body=st.binary(max_size=200))
def test_random_bytes(client: Fuzzed, body: bytes) -> None:
    check(client, body)


@FUZZ
@given(value=json_values)
def test_random_json(client: Fuzzed, value: Any) -> None:
    check(client, json.dumps(value).encode())


@FUZZ
@given(
    path=st.lists(
        st.sampled_from(["request", "object", "metadata", "spec", "containers", "uid", "kind"]),
        min_size=1,
        max_size=4,
    ),
    value=json_values,
)
def test_review_with_a_field_replaced(client: Fuzzed, path: list[str], value: Any) -> None:
    document: Any = review(base_pod({P + "inject": "true"}))
    target = document
    for key in path[:-1]:
        if isinstance(target, dict) and isinstance(target.get(key), dict):
            target = target[key]
    if isinstance(target, dict):
        target[path[-1]] = value
    check(client, json.dumps(document).encode())


@FUZZ
@given(
    annotations=annotation_maps,
    spec=st.dictionaries(
        st.sampled_from(
            ["hostNetwork", "initContainers", "volumes", "securityContext", "shareProcessNamespace"]
        ),
        json_values,
        max_size=3,
    ),
)
def test_pods_with_random_annotations_and_spec(
    client: Fuzzed, annotations: dict[str, str], spec: dict[str, Any]
) -> None:
    pod = base_pod(annotations)
    pod["spec"].update(spec)
    check(client, json.dumps(review(pod)).encode())


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(extra=st.integers(min_value=1, max_value=1024))
def test_oversized_reviews(client: Fuzzed, extra: int) -> None:
    pod = base_pod({P + "inject": "true", "big": "x" * (MAX_BODY + extra)})
    response = client.post("/mutate", content=json.dumps(review(pod)).encode())
    assert response.status_code == 413


def test_deeply_nested_json_is_a_400(client: Fuzzed) -> None:
    for depth in (1_000, 100_000):
        body = b'{"kind":"AdmissionReview","x":' + b"[" * depth + b"]" * depth + b"}"
        response = client.post("/mutate", content=body)
        assert response.status_code == 400
        assert "nested too deep" in response.json()["message"]
    pod = base_pod({P + "inject": "true"})
    pod["spec"]["deep"] = "PLACEHOLDER"
    body = json.dumps(review(pod)).encode().replace(b'"PLACEHOLDER"', b"[" * 5000 + b"]" * 5000)
    response = client.post("/mutate", content=body)
    assert response.status_code == 400, response.text
    assert client.get("/healthz").status_code == 200  # the connection and server survive


def test_the_check_catches_a_planted_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyError planted in render(): answered under the failure policy (a 200),
    and the fuzz property above fails on it."""

    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("planted")

    monkeypatch.setattr(review_module, "render", broken)
    with Fuzzed() as planted, pytest.raises((AssertionError, ExceptionGroup)) as caught:
        test_pods_with_random_annotations_and_spec(planted)
    failures = (
        caught.value.exceptions if isinstance(caught.value, ExceptionGroup) else (caught.value,)
    )
    assert all(isinstance(f, AssertionError) for f in failures)
    assert any("internal error" in str(f) or "failure policy" in str(f) for f in failures)
    assert planted.internal_errors() > 0
