"""Property: nothing a client sends to /mutate produces a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from injector.admission.review import MAX_BODY
from injector.admission.webhook import create_app
from injector.core.settings import Settings
from tests.golden_tool import BASE_SETTINGS
from tests.injector.reviews import review

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


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(lambda: Settings.from_spec(BASE_SETTINGS))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def check(client: TestClient, body: bytes) -> None:
    response = client.post("/mutate", content=body)
    assert response.status_code in (200, 400, 413), response.text
    data = response.json()
    if response.status_code == 200:
        assert isinstance(data["response"]["allowed"], bool)
    else:
        assert data["message"]


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
def test_random_bytes(client: TestClient, body: bytes) -> None:
    check(client, body)


@FUZZ
@given(value=json_values)
def test_random_json(client: TestClient, value: Any) -> None:
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
def test_review_with_a_field_replaced(client: TestClient, path: list[str], value: Any) -> None:
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
    client: TestClient, annotations: dict[str, str], spec: dict[str, Any]
) -> None:
    pod = base_pod(annotations)
    pod["spec"].update(spec)
    check(client, json.dumps(review(pod)).encode())


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(extra=st.integers(min_value=1, max_value=1024))
def test_oversized_reviews(client: TestClient, extra: int) -> None:
    pod = base_pod({P + "inject": "true", "big": "x" * (MAX_BODY + extra)})
    response = client.post("/mutate", content=json.dumps(review(pod)).encode())
    assert response.status_code == 413
