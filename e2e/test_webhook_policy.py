"""The ValidatingAdmissionPolicy of manifests/ against the real API server: the
injector's ServiceAccount may change caBundle of its MutatingWebhookConfiguration
and nothing else; other users are not affected.

Every change is a server-side dry run (``dryRun=All``: admission runs, nothing
is stored), made with a real token of the ServiceAccount (TokenRequest), so
RBAC and the policy decide exactly as they would for the running injector.
The last test removes the policy's binding to show that RBAC alone lets every
one of these changes through (the policy is what stops them), then puts it back.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from e2e.conftest import ApiAccess, Injector, service_account_token
from e2e.kube import Kube, wait_for

NAMESPACE = "sidecar-injector"
ACCOUNT = "sidecar-injector"
CONFIG = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/sidecar-injector"
POLICIES = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
BINDINGS = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
POLICY = "sidecar-injector-cabundle-only"
JSON_PATCH = "application/json-patch+json"
NEW_BUNDLE = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnot checked here\n").decode()

# (what, JSON Patch): every one must be refused for the ServiceAccount.
FORBIDDEN: list[tuple[str, list[dict[str, Any]]]] = [
    ("failurePolicy", [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Fail"}]),
    ("timeoutSeconds", [{"op": "replace", "path": "/webhooks/0/timeoutSeconds", "value": 30}]),
    (
        "rules",
        [
            {
                "op": "replace",
                "path": "/webhooks/0/rules/0/operations",
                "value": ["CREATE", "UPDATE"],
            }
        ],
    ),
    (
        "objectSelector",
        [{"op": "add", "path": "/webhooks/0/objectSelector", "value": {"matchLabels": {"x": "y"}}}],
    ),
    (
        "namespaceSelector",
        [{"op": "replace", "path": "/webhooks/0/namespaceSelector", "value": {}}],
    ),
    (
        "clientConfig.url",
        [{"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": "https://evil:1/m"}],
    ),
    ("webhook name", [{"op": "replace", "path": "/webhooks/0/name", "value": "x.example.io"}]),
    ("labels", [{"op": "add", "path": "/metadata/labels/owned-by", "value": "mallory"}]),
    ("annotations", [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]),
]


@pytest.fixture(scope="module")
def as_injector(kube: Kube, injector: Injector, api_access: ApiAccess) -> Iterator[httpx.Client]:
    """An HTTP client authenticated as the injector's ServiceAccount."""
    if kube.get(f"{POLICIES}/{POLICY}").status != 200:
        pytest.skip(f"ValidatingAdmissionPolicy {POLICY} is not installed (manifests not applied)")
    token = service_account_token(kube, NAMESPACE, ACCOUNT)
    with httpx.Client(
        base_url=api_access.server,
        verify=ssl.create_default_context(cafile=api_access.ca_file),
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=30,
    ) as client:
        yield client


def dry_patch(client: httpx.Client, ops: list[dict[str, Any]]) -> httpx.Response:
    return client.patch(
        CONFIG,
        params={"dryRun": "All", "fieldManager": "sidecar-injector"},
        content=httpx.Request("PATCH", "/", json=ops).content,
        headers={"Content-Type": JSON_PATCH},
    )


def ca_bundle_patch(kube: Kube) -> list[dict[str, Any]]:
    webhook = kube.get(CONFIG).expect(200)["webhooks"][0]
    op = "replace" if "caBundle" in webhook.get("clientConfig", {}) else "add"
    return [{"op": op, "path": "/webhooks/0/clientConfig/caBundle", "value": NEW_BUNDLE}]


def test_the_injector_may_change_the_ca_bundle(kube: Kube, as_injector: httpx.Client) -> None:
    response = dry_patch(as_injector, ca_bundle_patch(kube))
    assert response.status_code == 200, response.text
    webhook = response.json()["webhooks"][0]
    assert webhook["clientConfig"]["caBundle"] == NEW_BUNDLE


@pytest.mark.parametrize(("what", "ops"), FORBIDDEN, ids=[w for w, _ in FORBIDDEN])
def test_the_injector_may_change_nothing_else(
    kube: Kube, as_injector: httpx.Client, what: str, ops: list[dict[str, Any]]
) -> None:
    if (
        what == "clientConfig.url"
        and "url" not in kube.get(CONFIG).expect(200)["webhooks"][0]["clientConfig"]
    ):
        ops = [{"op": "replace", "path": "/webhooks/0/clientConfig/service/name", "value": "evil"}]
    response = dry_patch(as_injector, ops)
    assert response.status_code == 422, f"{what}: {response.status_code} {response.text}"
    message = response.json()["message"]
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in message
    assert "sidecar-injector ServiceAccount may" in message


def test_the_ca_bundle_with_another_change_is_refused(
    kube: Kube, as_injector: httpx.Client
) -> None:
    ops = ca_bundle_patch(kube) + FORBIDDEN[0][1]
    response = dry_patch(as_injector, ops)
    assert response.status_code == 422, response.text


def test_other_users_are_not_limited(kube: Kube, as_injector: httpx.Client) -> None:
    for what, ops in FORBIDDEN[:3]:
        response = kube.request(
            "PATCH", CONFIG, ops, query={"dryRun": "All"}, content_type=JSON_PATCH
        )
        assert response.status == 200, f"{what}: {response.message}"


def test_without_the_policy_rbac_alone_lets_it_all_through(
    kube: Kube, as_injector: httpx.Client
) -> None:
    """The planted fault: the binding removed, every forbidden change is admitted."""
    binding = kube.get(f"{BINDINGS}/{POLICY}").expect(200)
    kept = {"apiVersion": binding["apiVersion"], "kind": binding["kind"]}
    kept |= {"metadata": {"name": POLICY}, "spec": binding["spec"]}
    kube.delete(f"{BINDINGS}/{POLICY}").expect(200)
    try:
        wait_for(
            lambda: dry_patch(as_injector, FORBIDDEN[0][1]).status_code == 200,
            timeout=30,
            what="the API server to drop the unbound policy",
        )
        for what, ops in FORBIDDEN:
            if what == "clientConfig.url":
                continue
            response = dry_patch(as_injector, ops)
            assert response.status_code == 200, f"{what}: {response.status_code} {response.text}"
    finally:
        with contextlib.suppress(Exception):
            kube.create(BINDINGS, kept)
        wait_for(
            lambda: dry_patch(as_injector, FORBIDDEN[0][1]).status_code == 422,
            timeout=30,
            what="the policy binding to apply again",
        )
