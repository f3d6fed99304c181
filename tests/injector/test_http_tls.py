"""The webhook served by ``sidecar-injector serve`` over real TLS on 127.0.0.1:
golden pods sent as AdmissionReviews give patches that, applied, equal the
golden output."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from injector.admission.review import MAX_BODY
from tests.golden_tool import BASE_SETTINGS, cases, load_case, run_case
from tests.injector.reviews import patched, review
from tests.injector.server import InjectorServer


def served_cases() -> list[Path]:
    """Pod cases that need neither their own settings nor namespace labels."""
    result = []
    for case in cases():
        data = load_case(case)
        labels = (data.get("namespace") or {}).get("labels")
        if data["object"].get("kind") == "Pod" and not data.get("settings") and not labels:
            result.append(case)
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InjectorServer]:
    srv = InjectorServer(tmp_path_factory.mktemp("injector"), BASE_SETTINGS).start()
    try:
        yield srv
    finally:
        assert srv.stop() == 0, srv.output()


def test_enough_cases_are_served() -> None:
    assert len(served_cases()) >= 20


@pytest.mark.parametrize("case", served_cases(), ids=lambda p: p.stem)
def test_golden_case_over_tls(server: InjectorServer, case: Path) -> None:
    data = load_case(case)
    expected = run_case(data)
    namespace = (data.get("namespace") or {}).get("name", "default")
    response = server.post("/mutate", json=review(data["object"], namespace=namespace, uid="u1"))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == "u1"
    if expected["outcome"] == "denied":
        assert answer["allowed"] is False
        assert answer["status"]["message"] == expected["message"]
        assert answer.get("warnings", []) == expected.get("warnings", [])
        return
    assert answer["allowed"] is True
    assert patched(data["object"], answer) == expected["object"]
    assert answer.get("warnings", []) == expected.get("warnings", [])


def test_certificate_is_verified(server: InjectorServer, tmp_path: Path) -> None:
    with httpx.Client(verify=ssl.create_default_context()) as untrusting:
        with pytest.raises(httpx.ConnectError):
            untrusting.get(server.url + "/healthz")


def test_malformed_review_over_tls_is_400(server: InjectorServer) -> None:
    response = server.post("/mutate", content=b'{"kind": "AdmissionReview"')
    assert response.status_code == 400
    assert "not JSON" in response.json()["message"]


def test_metrics_and_readyz_over_tls(server: InjectorServer) -> None:
    assert server.get("/readyz").status_code == 200
    metrics = server.get("/metrics").text
    assert "sidecar_injector_reviews_total" in metrics


def test_serve_rejects_half_tls_options(tmp_path: Path) -> None:
    srv = InjectorServer(tmp_path, BASE_SETTINGS, "--tls-cert", str(tmp_path / "x.pem"))
    code = srv.proc.wait(timeout=30)
    srv.stop()
    assert code == 2
    assert "--tls-cert and --tls-key go together" in srv.output()


# What uvicorn itself does with hostile input (chunked bodies, bodies beyond the
# limit, invalid UTF-8) differs from the in-process TestClient of test_fuzz.py:
# the same property, against the real TLS server.
bodies = (
    st.binary(max_size=512)
    | st.text(max_size=200).map(str.encode)
    | st.builds(
        lambda kind, request: json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": kind, "request": request}
        ).encode(),
        st.sampled_from(["AdmissionReview", "Pod", ""]),
        st.dictionaries(st.sampled_from(["uid", "kind", "object", "operation"]), st.integers()),
    )
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_hostile_bodies_over_tls_never_500(server: InjectorServer, body: bytes) -> None:
    response = server.post("/mutate", content=body)
    assert response.status_code in (200, 400), response.text
    assert "Traceback" not in response.text
    if response.status_code == 400:
        assert response.json()["message"]


def test_oversized_review_over_tls_is_413(server: InjectorServer) -> None:
    big = review({"kind": "Pod", "metadata": {"annotations": {"x": "y" * (MAX_BODY + 1)}}})
    response = server.post("/mutate", json=big)
    assert response.status_code == 413
    assert "at most" in response.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        yield b'{"kind": "AdmissionReview", "pad": "'
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = server.post("/mutate", content=chunks())
    assert response.status_code == 413
    assert server.get("/healthz").status_code == 200
