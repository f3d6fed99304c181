"""The webhook's routes on the real HTTP server in-process: envelope handling,
fast path, metrics, readiness, failure policy. (Over real TLS and worker
processes: test_http_tls.py.)"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from injector.admission import review as review_module
from injector.admission.metrics import Metrics
from injector.admission.webhook import Webhook
from injector.core.model import NamespaceInfo
from injector.core.settings import Settings
from injector.core.specs import settings_from_spec
from tests.golden_tool import BASE_SETTINGS
from tests.injector.reviews import patched, review
from tests.injector.served import Served

SETTINGS = settings_from_spec(BASE_SETTINGS)
P = "sidecar.example.io/"


def pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "default"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]}]
        },
    }


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(metrics: Metrics) -> Iterator[Served]:
    with Served(Webhook(lambda: SETTINGS, metrics=metrics)) as c:
        yield c


def mutate(client: Served, body: Any) -> dict[str, Any]:
    response = client.post("/mutate", json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    assert data["apiVersion"] == "admission.k8s.io/v1"
    assert data["kind"] == "AdmissionReview"
    return data["response"]  # type: ignore[no-any-return]


def test_injects_and_echoes_uid(client: Served) -> None:
    obj = pod({P + "inject": "true", P + "proxy-upstream": "http://x:80"})
    answer = mutate(client, review(obj, uid="abc-123"))
    assert answer["uid"] == "abc-123"
    assert answer["allowed"] is True
    result = patched(obj, answer)
    assert result["spec"]["initContainers"][0]["name"] == "sidecar-proxy"


def test_plain_pod_fast_path_has_no_patch(client: Served, metrics: Metrics) -> None:
    answer = mutate(client, review(pod()))
    assert answer == {"uid": answer["uid"], "allowed": True}
    assert metrics.get("sidecar_injector_skips_total", "not-requested") == 1


def test_dry_run_gets_the_same_answer(client: Served) -> None:
    obj = pod({P + "inject": "true", P + "proxy-upstream": "http://x:80"})
    wet = mutate(client, review(obj, uid="u"))
    dry = mutate(client, review(obj, uid="u", dry_run=True))
    assert dry == wet


@pytest.mark.parametrize(
    ("operation", "kind"), [("UPDATE", "Pod"), ("DELETE", "Pod"), ("CREATE", "Deployment")]
)
def test_other_operations_and_kinds_pass_unchanged(
    client: Served, operation: str, kind: str
) -> None:
    obj = pod({P + "inject": "true"})
    answer = mutate(client, review(obj, operation=operation, kind=kind))
    assert answer["allowed"] is True
    assert "patch" not in answer


def test_invalid_annotation_is_denied_with_message(client: Served, metrics: Metrics) -> None:
    answer = mutate(client, review(pod({P + "inject": "true", P + "proxy-timeout": "soon"})))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    assert "proxy-timeout" in answer["status"]["message"]
    assert "'soon'" in answer["status"]["message"]
    assert "duration" in answer["status"]["message"]
    assert metrics.get("sidecar_injector_denials_total") == 1


def test_unknown_annotation_is_a_warning(client: Served) -> None:
    obj = pod({P + "inject": "true", P + "proxy-upstrem": "http://x:80"})
    answer = mutate(client, review(obj))
    assert answer["allowed"] is True
    assert any("did you mean sidecar.example.io/proxy-upstream" in w for w in answer["warnings"])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"kind": "AdmissionReview"}', "expected kind AdmissionReview"),
        (b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}', "no request"),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{}}',
            "uid",
        ),
    ],
)
def test_malformed_reviews_get_400(client: Served, body: bytes, fragment: str) -> None:
    response = client.post("/mutate", content=body)
    assert response.status_code == 400
    assert fragment in response.json()["message"]


def test_malformed_pod_gets_400(client: Served) -> None:
    body = review({"metadata": {"annotations": {"a": 1}}, "spec": {"containers": []}})
    response = client.post("/mutate", json=body)
    assert response.status_code == 400
    assert "annotations" in response.json()["message"]


def test_oversized_body_gets_413(client: Served) -> None:
    response = client.post("/mutate", content=b" " * (review_module.MAX_BODY + 1))
    assert response.status_code == 413


def test_health_readiness_and_metrics(metrics: Metrics) -> None:
    state = {"ready": False}
    app = Webhook(
        lambda: SETTINGS,
        metrics=metrics,
        readiness=lambda: (state["ready"], "profiles not loaded"),
    )
    with Served(app) as c:
        assert c.get("/healthz").status_code == 200
        not_ready = c.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["reason"] == "profiles not loaded"
        state["ready"] = True
        assert c.get("/readyz").status_code == 200
        c.post("/mutate", json=review(pod({P + "inject": "true", P + "secret-db": "a/b"})))
        text = c.get("/metrics").text
    assert 'sidecar_injector_injections_total{role="secrets"} 1.0' in text
    assert 'sidecar_injector_reviews_total{outcome="injected"} 1.0' in text
    assert "sidecar_injector_review_duration_seconds_bucket" in text


def test_namespace_label_from_the_lookup(metrics: Metrics) -> None:
    labels = {"shop": {P + "injection": "enabled"}}
    app = Webhook(
        lambda: SETTINGS,
        metrics=metrics,
        namespaces=lambda name: NamespaceInfo(name, labels.get(name, {})),
    )
    with Served(app) as c:
        enabled = mutate(c, review(pod(), namespace="shop"))
        other = mutate(c, review(pod(), namespace="default"))
    assert "patch" in enabled
    assert "patch" not in other


@pytest.mark.parametrize(("policy", "allowed"), [("Fail", False), ("Ignore", True)])
def test_internal_error_follows_the_failure_policy(
    monkeypatch: pytest.MonkeyPatch, policy: Any, allowed: bool
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(review_module, "render", broken)
    app = Webhook(lambda: SETTINGS, failure_policy=policy)
    with Served(app) as c:
        answer = mutate(c, review(pod({P + "inject": "true"})))
    assert answer["allowed"] is allowed
    assert "patch" not in answer
    if allowed:
        assert "internal error" in answer["warnings"][0]
    else:
        assert answer["status"]["code"] == 500
        assert "internal error (RuntimeError)" in answer["status"]["message"]


def test_settings_provider_failure_is_not_a_500() -> None:
    def no_settings() -> Settings:
        raise RuntimeError("store gone")

    app = Webhook(no_settings)
    with Served(app) as c:
        answer = mutate(c, review(pod({P + "inject": "true"})))
    assert answer["allowed"] is False
    assert "cannot read its settings" in answer["status"]["message"]


def test_settings_are_read_per_review() -> None:
    current = {"settings": SETTINGS}
    app = Webhook(lambda: current["settings"])
    obj = pod({P + "inject": "true", P + "proxy-upstream": "http://x:80"})
    with Served(app) as c:
        native = patched(obj, mutate(c, review(obj)))
        current["settings"] = SETTINGS.replace(cluster_version=(1, 28))
        classic = patched(obj, mutate(c, review(obj)))
    assert native["spec"]["initContainers"][0]["name"] == "sidecar-proxy"
    assert classic["spec"]["containers"][0]["name"] == "sidecar-proxy"


def test_a_pod_past_the_limits_is_denied_naming_them(client: Served) -> None:
    obj = pod({P + "inject": "true", **{f"{P}nope-{i}": "x" for i in range(200)}})
    obj["spec"]["volumes"] = [{"name": f"v{i}", "emptyDir": {}} for i in range(2000)]
    answer = mutate(client, review(obj))
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "201 our annotations" in message
    assert "2000 volumes" in message
    assert "volumes 1024" in message  # the cap is named


def test_a_pod_that_opts_out_is_never_denied_for_its_size(client: Served) -> None:
    obj = pod({P + "inject": "false", **{f"{P}nope-{i}": "x" for i in range(200)}})
    obj["spec"]["volumes"] = [{"name": f"v{i}", "emptyDir": {}} for i in range(2000)]
    answer = mutate(client, review(obj))
    assert answer == {"uid": answer["uid"], "allowed": True}


def test_an_internal_error_is_logged_once_without_the_pod(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "pod-value-7c1e"

    def broken(pod: Any, *_: Any, **__: Any) -> Any:
        raise KeyError(pod["metadata"]["annotations"][P + "secret-x"])

    monkeypatch.setattr(review_module, "render", broken)
    obj = pod({P + "inject": "true", P + "secret-x": secret})
    with Served(Webhook(lambda: SETTINGS, failure_policy="Ignore")) as c:
        answer = mutate(c, review(obj, uid="u-1"))
    assert answer["allowed"] is True
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    text = logging.Formatter().format(errors[0])  # with any exc_info, as a handler would
    assert "review u-1: render failed (KeyError" in text
    assert "in broken" in text  # where it happened
    assert secret not in text
    assert secret not in json.dumps(answer)


@pytest.mark.parametrize("label_bytes", [0, 5000])
def test_annotations_found_wherever_they_are_in_the_body(label_bytes: int) -> None:
    """The whole pod is decoded in one pass when our prefix shows in the body's
    head, else after a first pass over the annotations: the same answer."""
    obj = pod({P + "inject": "true", P + "proxy-upstream": "http://x:80"})
    obj["metadata"] = {"labels": {"long": "x" * label_bytes}, **obj["metadata"]}
    body = json.dumps(review(obj, uid="u")).encode()
    assert (body.find(P.encode()) < review_module._HEAD_BYTES) == (label_bytes == 0)
    parsed = review_module.parse_review(body)
    assert (parsed._document is not None) == (label_bytes == 0)
    outcome = review_module.admit(parsed, SETTINGS, NamespaceInfo("default"))
    assert outcome.result == "injected"
    result = patched(obj, json.loads(outcome.to_json())["response"])
    assert result["spec"]["initContainers"][0]["name"] == "sidecar-proxy"
