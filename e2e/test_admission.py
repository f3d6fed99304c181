"""Admission through a real API server: what users see when they create pods.

Runs against the local control plane (``make e2e-local``: no nodes, the
injector as a local process) and against any cluster with the injector
installed (``make e2e``). Deployments and Jobs: with running controllers their
pods are checked; without, the pod template is admitted as a server-side
dry-run Pod, which goes through the same webhook call.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import harness
from e2e.conftest import Injector
from e2e.harness import PREFIX, is_injected
from e2e.harness_spy import SPY_ANNOTATION, SpyWebhook
from e2e.kube import Kube, wait_for

pytestmark = pytest.mark.usefixtures("injector")

INJECT = {PREFIX + "inject": "true"}
APP_IMAGE = "registry.k8s.io/pause:3.10"


def pods(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods"


def app_container() -> dict[str, Any]:
    # A containerPort gives the proxy an inbound port to front (else it is denied).
    return {"name": "app", "image": APP_IMAGE, "ports": [{"containerPort": 8080}]}


def is_ours(item: dict[str, Any]) -> bool:
    return str(item["name"]).startswith("sidecar-")


def make_pod(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations or {}},
        "spec": {"containers": [app_container()]},
    }


def container_names(pod: dict[str, Any]) -> list[str]:
    spec = pod["spec"]
    return [c["name"] for c in spec.get("initContainers", []) + spec["containers"]]


def ours(pod: dict[str, Any]) -> dict[str, Any]:
    """What injection added: sidecar-* containers and volumes, and the status annotation
    (the ServiceAccount plugin's per-pod random volume name made comparable)."""
    spec = json.loads(re.sub(r'"kube-api-access-[a-z0-9]+"', '"kube-api-access"', json.dumps(pod)))[
        "spec"
    ]
    return {
        "initContainers": [
            c for c in spec.get("initContainers", []) if c["name"].startswith("sidecar-")
        ],
        "containers": [c for c in spec["containers"] if c["name"].startswith("sidecar-")],
        "volumes": [v for v in spec.get("volumes", []) if v["name"].startswith("sidecar-")],
        "status": (pod["metadata"].get("annotations") or {}).get(harness.STATUS_ANNOTATION),
    }


def kubectl_run(
    kubectl: str, *args: str, manifest: dict[str, Any] | None = None, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    command = [kubectl, *args]
    if manifest is not None:
        path = tmp_path / "manifest.yaml"
        path.write_text(yaml.safe_dump(manifest))
        command += ["-f", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def template_pod(template: dict[str, Any], name: str) -> dict[str, Any]:
    """The Pod a controller would create from a pod template."""
    metadata = copy.deepcopy(template.get("metadata", {}))
    metadata["name"] = name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def controller_pod(
    kube: Kube, namespace: str, selector: str, template: dict[str, Any], has_nodes: bool
) -> dict[str, Any]:
    """A pod of the workload: the controller's (when it runs), else the template dry-run."""
    if has_nodes:

        def first() -> dict[str, Any] | None:
            items = kube.request("GET", pods(namespace), query={"labelSelector": selector}).expect(
                200
            )["items"]
            return items[0] if items else None

        return wait_for(first, 120, f"a pod with {selector} in {namespace}")
    return kube.create(
        pods(namespace), template_pod(template, "from-template"), dry_run=True
    ).expect(201)


# --- pods ------------------------------------------------------------------------


def test_annotated_pod_is_injected_and_stored_injected(kube: Kube, namespace: str) -> None:
    created = kube.create(pods(namespace), make_pod("web", INJECT)).expect(201)
    assert is_injected(created)
    assert "sidecar-proxy" in container_names(created)
    assert [c["name"] for c in created["spec"]["containers"]].count("app") == 1
    stored = kube.get(f"{pods(namespace)}/web").expect(200)
    assert ours(stored) == ours(created)


def test_pod_without_our_annotations_is_untouched(kube: Kube, namespace: str) -> None:
    created = kube.create(pods(namespace), make_pod("plain")).expect(201)
    assert not is_injected(created)
    assert container_names(created) == ["app"]
    assert ours(created) == {"initContainers": [], "containers": [], "volumes": [], "status": None}


def test_inject_false_is_untouched(kube: Kube, namespace: str) -> None:
    created = kube.create(pods(namespace), make_pod("off", {PREFIX + "inject": "false"})).expect(
        201
    )
    assert container_names(created) == ["app"]


# --- workloads ---------------------------------------------------------------------


def test_deployment_pods_are_injected(kube: Kube, namespace: str, has_nodes: bool) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": INJECT},
                "spec": {"containers": [app_container()]},
            },
        },
    }
    stored = kube.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment).expect(
        201
    )
    # The webhook sees pods only: the Deployment itself is stored as written.
    assert [c["name"] for c in stored["spec"]["template"]["spec"]["containers"]] == ["app"]
    pod = controller_pod(kube, namespace, "app=web", stored["spec"]["template"], has_nodes)
    assert is_injected(pod)
    assert "sidecar-proxy" in container_names(pod)


def test_job_pods_are_injected(
    kube: Kube, namespace: str, has_nodes: bool, injector: Injector
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "batch"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app": "batch"}, "annotations": INJECT},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [app_container()],
                },
            },
        },
    }
    stored = kube.create(f"/apis/batch/v1/namespaces/{namespace}/jobs", job).expect(201)
    pod = controller_pod(kube, namespace, "app=batch", stored["spec"]["template"], has_nodes)
    assert is_injected(pod)
    if injector.local is not None:
        # The local injector is told the API server's version (>= 1.29): native
        # sidecars, so the Job can complete while the proxy keeps running.
        proxy = next(
            c for c in pod["spec"].get("initContainers", []) if c["name"] == "sidecar-proxy"
        )
        assert proxy.get("restartPolicy") == "Always"


# --- what kubectl shows -------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "value"), [("proxy-inbound-port", "99999"), ("proxy-timeout", "soon")]
)
def test_invalid_annotation_is_denied_with_our_message(
    kubectl: str, kube: Kube, namespace: str, tmp_path: Path, annotation: str, value: str
) -> None:
    manifest = make_pod("bad", INJECT | {PREFIX + annotation: value})
    result = kubectl_run(kubectl, "create", "-n", namespace, manifest=manifest, tmp_path=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "denied the request" in result.stderr, result.stderr
    assert f"annotation {PREFIX}{annotation}: '{value}' is not valid" in result.stderr
    assert "expected " in result.stderr
    assert "Traceback" not in result.stderr
    assert kube.get(f"{pods(namespace)}/bad").status == 404


def test_unknown_annotation_is_a_warning(
    kubectl: str, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    manifest = make_pod("typo", INJECT | {PREFIX + "proxy-upstrem": "http://backend:8080"})
    result = kubectl_run(kubectl, "create", "-n", namespace, manifest=manifest, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        f"Warning: unknown annotation {PREFIX}proxy-upstrem ignored; "
        f"did you mean {PREFIX}proxy-upstream?"
    ) in result.stderr
    assert is_injected(kube.get(f"{pods(namespace)}/typo").expect(200))


def test_kubectl_dry_run_server_gets_the_same_injection(
    kubectl: str, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    manifest = make_pod("dry", INJECT)
    result = kubectl_run(
        kubectl,
        "create",
        "-n",
        namespace,
        "--dry-run=server",
        "-o",
        "json",
        manifest=manifest,
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    dry = json.loads(result.stdout)
    assert is_injected(dry)
    assert kube.get(f"{pods(namespace)}/dry").status == 404  # nothing stored
    created = kube.create(pods(namespace), manifest).expect(201)
    assert ours(dry) == ours(created)


# --- webhook configuration: failurePolicy, namespaceSelector, reinvocation ----------


def _our_webhook(kube: Kube) -> dict[str, Any]:
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    for config in kube.get(path).expect(200)["items"]:
        for webhook in config.get("webhooks", []):
            if webhook["name"].endswith("sidecar.example.io"):
                return dict(webhook)
    raise AssertionError("no webhook named *.sidecar.example.io is registered")


def test_injector_down_follows_the_failure_policy(
    kube: Kube, injector: Injector, namespace: str
) -> None:
    local = injector.require_local()
    policy = _our_webhook(kube).get("failurePolicy", "Fail")
    local.stop()
    try:
        response = kube.create(pods(namespace), make_pod("down", INJECT))
        if policy == "Ignore":
            assert response.status == 201, response.message
            assert not is_injected(response.body)
            assert container_names(response.body) == ["app"]
        else:
            assert response.status >= 400
            assert "failed calling webhook" in response.message, response.message
    finally:
        local.start()
        injector.wait_ready()
    assert is_injected(kube.create(pods(namespace), make_pod("up-again", INJECT)).expect(201))


def test_namespace_labelled_disabled_is_never_sent_to_us(
    kube: Kube, injector: Injector, namespace: str
) -> None:
    """Counted on both ends: the API server's calls to our webhook (its own
    metrics) and, when the injector runs locally, the reviews it answered."""
    webhook = _our_webhook(kube)["name"]
    disabled = kube.create_namespace("e2e-off", labels={PREFIX + "injection": "disabled"})
    local = injector.local

    def counts() -> tuple[float, float]:
        return harness.webhook_calls(kube, webhook), local.reviews() if local else 0.0

    try:
        before = counts()
        created = kube.create(pods(disabled), make_pod("web", INJECT)).expect(201)
        assert not is_injected(created)
        assert counts() == before, "the API server sent us a pod of a disabled namespace"
        # The counters do count: the same pod in an ordinary namespace reaches us.
        assert is_injected(kube.create(pods(namespace), make_pod("web", INJECT)).expect(201))
        after = counts()
        assert after[0] > before[0]
        assert after[1] > before[1] or local is None
    finally:
        kube.delete_namespace(disabled)


def test_resubmitting_an_injected_pod_changes_nothing(kube: Kube, namespace: str) -> None:
    injected = kube.create(pods(namespace), make_pod("once", INJECT), dry_run=True).expect(201)
    again = copy.deepcopy(injected)
    for key in ("uid", "creationTimestamp", "resourceVersion", "generation", "managedFields"):
        again["metadata"].pop(key, None)
    again.pop("status", None)
    second = kube.create(pods(namespace), again, dry_run=True).expect(201)
    assert container_names(second) == container_names(injected)
    assert ours(second) == ours(injected)


SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def _token_mounted(container: dict[str, Any]) -> bool:
    return any(m["mountPath"] == SERVICE_ACCOUNT_MOUNT for m in container.get("volumeMounts", []))


def test_reinvocation_keeps_what_the_serviceaccount_plugin_added(
    kube: Kube, injector: Injector, namespace: str
) -> None:
    """Every cluster runs the ServiceAccount admission plugin. After our first
    call it mounts the token into the containers we added, the object changed,
    so the API server calls us again (reinvocationPolicy IfNeeded); that call
    must change nothing, so our containers keep that mount like the app's."""
    before = injector.local.reviews() if injector.local else None
    created = kube.create(pods(namespace), make_pod("sa", INJECT)).expect(201)
    if injector.local is not None and before is not None:
        assert injector.local.reviews() - before == 2, "expected to be reinvoked once"
    containers = created["spec"].get("initContainers", []) + created["spec"]["containers"]
    assert _token_mounted(next(c for c in containers if c["name"] == "app"))
    missing = [c["name"] for c in containers if not _token_mounted(c)]
    assert missing == [], f"the ServiceAccount token mount was removed from {missing}"


def test_without_a_token_mount_we_are_called_once(
    kube: Kube, injector: Injector, namespace: str
) -> None:
    local = injector.require_local()
    pod = make_pod("no-token", INJECT)
    pod["spec"]["automountServiceAccountToken"] = False
    before = local.reviews()
    assert is_injected(kube.create(pods(namespace), pod).expect(201))
    assert local.reviews() - before == 1


def test_reinvocation_after_another_webhook_leaves_the_injection_unchanged(
    kube: Kube, injector: Injector, namespace: str
) -> None:
    if _our_webhook(kube).get("reinvocationPolicy") != "IfNeeded":
        pytest.skip("our webhook is not configured with reinvocationPolicy: IfNeeded")
    name = f"zz-e2e-spy-{namespace}"  # sorts after ours: called after our injector
    with SpyWebhook() as spy:
        harness.apply_webhook_configuration(kube, spy.configuration(name, namespace))
        try:

            def spy_active() -> bool:
                probe = kube.create(pods(namespace), make_pod("probe", INJECT), dry_run=True)
                return probe.ok and SPY_ANNOTATION in probe.body["metadata"]["annotations"]

            wait_for(spy_active, 60, "the API server to call the spy webhook")
            before = injector.local.reviews() if injector.local else None
            created = kube.create(pods(namespace), make_pod("twice", INJECT)).expect(201)
            after = injector.local.reviews() if injector.local else None
        finally:
            harness.delete_webhook_configuration(kube, name)
    assert created["metadata"]["annotations"][SPY_ANNOTATION] == "1"
    names = container_names(created)
    assert len(names) == len(set(names)), f"a container was added twice: {names}"
    volumes = [v["name"] for v in created["spec"].get("volumes", [])]
    assert len(volumes) == len(set(volumes)), f"a volume was added twice: {volumes}"
    # The spy saw the pod after our injection; we were called again after it
    # and kept the injection as it was.
    first_pass = spy.reviews[-1]["request"]["object"]
    assert is_injected(first_pass)
    assert container_names(created) == container_names(first_pass)
    assert ours(created)["status"] == ours(first_pass)["status"]
    if before is not None and after is not None:
        assert after - before >= 2, "our webhook was not reinvoked after the spy changed the pod"
