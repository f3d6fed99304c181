"""manifests/: every overlay builds, every object validates (strict), and the
webhook, RBAC and Deployment keep the invariants the operator relies on."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
import yaml

from e2e import vault_image
from injector.core.profiles import parse
from injector.core.settings import DEFAULT_IMAGE
from injector.operator import options as operator
from injector.operator.mesh_options import MeshOptions
from injector.operator.pod_certificates import SIGNER_NAME

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ["base", "overlays/dev", "overlays/e2e", "overlays/label-opt-in"]
K8S_VERSION = "1.30"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
SYSTEM = {"kube-system", "kube-public", "kube-node-lease"}
NAMESPACE = "sidecar-injector"

pytestmark = pytest.mark.skipif(
    not Path(KUBECTL).exists(), reason="kubectl not installed: `kubectl kustomize` builds them"
)


@functools.cache
def build(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(MANIFESTS / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in build(overlay) if doc["kind"] == kind]


def one(overlay: str, kind: str) -> dict[str, Any]:
    found = of_kind(overlay, kind)
    assert len(found) == 1, f"{overlay}: expected one {kind}, found {len(found)}"
    return found[0]


def crd_schema() -> dict[str, Any]:
    crd = one("base", "CustomResourceDefinition")
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(overlay: str) -> None:
    for doc in build(overlay):
        where = f"{overlay}: {doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] == "SidecarProfile":
            jsonschema.validate(doc, crd_schema())
            profile, _, error = parse(doc)
            assert error is None, f"{where}: {error}"
            assert profile is not None
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def test_the_top_level_kustomization_is_the_base() -> None:
    assert build(".") == build("base")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_webhook_configuration_keeps_its_invariants(overlay: str) -> None:
    config = one(overlay, "MutatingWebhookConfiguration")
    assert config["metadata"]["name"] == operator.DEFAULT_NAME
    (webhook,) = config["webhooks"]
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["sideEffects"] == "None"
    assert 1 <= webhook["timeoutSeconds"] <= 5
    assert webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["matchPolicy"] == "Equivalent"
    assert webhook["failurePolicy"] == "Ignore"
    assert "caBundle" not in webhook["clientConfig"], "the operator patches caBundle"
    assert webhook["clientConfig"]["service"] == {
        "name": "sidecar-injector",
        "namespace": NAMESPACE,
        "path": "/mutate",
        "port": 443,
    }
    assert webhook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    expressions = webhook["namespaceSelector"]["matchExpressions"]
    by_key = {e["key"]: e for e in expressions}
    names = by_key["kubernetes.io/metadata.name"]
    assert names["operator"] == "NotIn"
    assert set(names["values"]) == {*SYSTEM, NAMESPACE}
    label = by_key["sidecar.example.io/injection"]
    assert (label["operator"], label["values"]) == ("NotIn", ["disabled"])
    selector = webhook.get("objectSelector")
    if overlay == "overlays/label-opt-in":
        assert selector == {"matchLabels": {"sidecar.example.io/inject": "true"}}
    else:
        assert selector is None


def test_the_deployment_is_highly_available_hardened_and_matches_the_webhook() -> None:
    deployment = one("base", "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = one("base", "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == spec["selector"]
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    args = container["args"]
    assert args[:2] == ["serve", "--operator"]
    webhook = one("base", "MutatingWebhookConfiguration")["webhooks"][0]
    assert f"--failure-policy={webhook['failurePolicy']}" in args
    port = next(p for p in container["ports"] if p["name"] == "https")
    assert f"--listen=0.0.0.0:{port['containerPort']}" in args
    service = one("base", "Service")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
        {"name": "mesh", "port": 15012, "targetPort": "mesh", "protocol": "TCP"},
    ]
    mesh = next(p for p in container["ports"] if p["name"] == "mesh")
    assert mesh["containerPort"] == MeshOptions().port
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}


def _rules(kind: str, mesh: bool = False) -> list[dict[str, Any]]:
    return [
        rule
        for role in of_kind("base", kind)
        if role["metadata"]["name"].endswith("-mesh") == mesh
        for rule in role["rules"]
    ]


def test_mesh_rbac_names_what_the_mesh_uses() -> None:
    cluster = _rules("ClusterRole", mesh=True)
    granted = {
        (r["resources"][0], v, tuple(r.get("resourceNames", ())))
        for r in cluster
        for v in r["verbs"]
    }
    assert granted == {
        ("tokenreviews", "create", ()),
        ("pods", "get", ()),
        ("pods", "list", ()),
        ("configmaps", "list", ()),
        ("configmaps", "create", ()),
        ("configmaps", "update", ("sidecar-mesh-trust",)),
        ("events", "create", ()),
        ("podcertificaterequests", "get", ()),
        ("podcertificaterequests", "list", ()),
        ("podcertificaterequests", "watch", ()),
        ("podcertificaterequests/status", "update", ()),
        ("signers", "sign", (SIGNER_NAME,)),
    }
    own = {
        (r["resources"][0], v, tuple(r.get("resourceNames", ())))
        for r in _rules("Role", mesh=True)
        for v in r["verbs"]
    }
    assert own == {
        ("secrets", "get", ("sidecar-mesh-ca",)),
        ("secrets", "update", ("sidecar-mesh-ca",)),
        ("configmaps", "get", ()),
        ("configmaps", "update", ()),
    }
    for role in of_kind("base", "Role"):
        assert role["metadata"]["namespace"] == NAMESPACE


def test_rbac_is_least_privilege_and_names_what_the_operator_uses() -> None:
    for rule in _rules("ClusterRole") + _rules("Role"):
        assert "*" not in rule["verbs"], rule
        assert "*" not in rule["resources"], rule
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        ), rule
    cluster = {(r["apiGroups"][0], r["resources"][0]): r for r in _rules("ClusterRole")}
    assert set(cluster) == {
        ("sidecar.example.io", "sidecarprofiles"),
        ("sidecar.example.io", "sidecarprofiles/status"),
        ("", "namespaces"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
    }
    assert set(cluster["sidecar.example.io", "sidecarprofiles"]["verbs"]) == {
        "get",
        "list",
        "watch",
    }
    assert set(cluster["sidecar.example.io", "sidecarprofiles/status"]["verbs"]) == {"get", "patch"}
    webhook = cluster["admissionregistration.k8s.io", "mutatingwebhookconfigurations"]
    assert webhook["resourceNames"] == [operator.DEFAULT_NAME]
    assert set(webhook["verbs"]) == {"get", "patch"}
    # Namespaced: only our Secret and our Lease by name; create cannot take a name.
    for rule in _rules("Role"):
        if rule["verbs"] == ["create"]:
            assert "resourceNames" not in rule
            continue
        assert rule["resourceNames"] in ([operator.SECRET_NAME], [operator.DEFAULT_NAME])
        assert set(rule["verbs"]) <= {"get", "update", "patch"}
    resources = {r["resources"][0] for r in _rules("Role")}
    assert resources == {"secrets", "leases"}
    for role in of_kind("base", "Role"):
        assert role["metadata"]["namespace"] == NAMESPACE
    for binding in of_kind("base", "RoleBinding") + of_kind("base", "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "sidecar-injector", "namespace": NAMESPACE}
        ]
    deployment = one("base", "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "sidecar-injector"


def test_the_crd_is_cluster_scoped_with_a_status_subresource() -> None:
    crd = one("base", "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "sidecarprofiles.sidecar.example.io"
    assert crd["spec"]["scope"] == "Cluster"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"valid", "default", "inUse", "message", "observedGeneration"} <= set(status)


def test_the_crd_schema_accepts_every_field_the_profile_parser_knows() -> None:
    """The CRD and the contract's rows with a ``profile`` path agree, nested fields too."""
    from injector.core.specs import PROFILE_KEYS, SECTIONS

    spec = crd_schema()["properties"]["spec"]["properties"]
    assert set(spec) == {*PROFILE_KEYS, "default"}
    for head, subs in SECTIONS.items():
        if subs:
            assert set(spec[head]["properties"]) == set(subs), head


def test_the_default_profile_is_the_default() -> None:
    profile = one("base", "SidecarProfile")
    assert profile["metadata"]["name"] == "default"
    assert profile["spec"]["default"] is True
    # The shipped image names its registry (a bare name is docker.io, all of it
    # then allowed for overrides), and it is the injector's built-in default.
    assert profile["spec"]["image"] == DEFAULT_IMAGE
    assert "." in DEFAULT_IMAGE.split("/", 1)[0]


def test_the_e2e_overlay_uses_local_images_a_real_vault_and_the_stand_in() -> None:
    deployment = next(
        d
        for d in of_kind("overlays/e2e", "Deployment")
        if d["metadata"]["name"] == "sidecar-injector"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "sidecar-injector/injector:e2e"
    assert container["imagePullPolicy"] == "Never"
    profile = one("overlays/e2e", "SidecarProfile")
    assert profile["spec"]["image"] == "sidecar-injector/sidecar:e2e"
    images = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
        for d in of_kind("overlays/e2e", "Deployment")
    }
    assert images["vault"]["image"] == vault_image.IMAGE  # the real one, a local archive
    assert images["vault"]["imagePullPolicy"] == "Never"
    assert images["vault-standin"]["image"] == "sidecar-injector/vault-standin:e2e"
    service = next(
        s for s in of_kind("overlays/e2e", "Service") if s["metadata"]["name"] == "vault"
    )
    address = (
        f"http://vault.{service['metadata']['namespace']}.svc:{service['spec']['ports'][0]['port']}"
    )
    assert profile["spec"]["vault"]["address"] == address


def test_vault_is_never_shipped() -> None:
    """Vault's licence lets our tests run it, not our images or manifests ship it."""
    for overlay in ("base", "overlays/dev", "overlays/label-opt-in"):
        assert "sidecar-e2e/vault" not in json.dumps(build(overlay))
    for recipe in (ROOT / "images").glob("*"):
        text = recipe.read_text()
        assert "vault_build" not in text
        assert "hashicorp" not in text.lower()


def test_the_webhook_policy_binds_the_injector_account_to_its_own_configuration() -> None:
    policy = one("base", "ValidatingAdmissionPolicy")
    binding = one("base", "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (condition,) = spec["matchConditions"]
    subject = of_kind("base", "ClusterRoleBinding")[0]["subjects"][0]
    account = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
    assert f'"{account}"' in condition["expression"]
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}
    assert "mutatingwebhookconfigurations" in rule["resources"]
    update = next(v for v in spec["variables"] if v["name"] == "update")["expression"]
    assert f'object.metadata.name == "{operator.DEFAULT_NAME}"' in update
    kept = next(v for v in spec["variables"] if v["name"] == "kept")["expression"]
    # Every field of a webhook (as the newest schema knows it) is compared but
    # the name (matched on) and clientConfig.caBundle (the one allowed change).
    fields = _schema_fields("mutatingwebhook") - {"name", "clientConfig"}
    client = _schema_fields("webhookclientconfig") - {"caBundle"}
    assert {f for f in fields if f"w.?{f} == o.?{f}" not in kept} == set()
    assert {
        f for f in client if f"w.?clientConfig.?{f} == o.?clientConfig.?{f}" not in kept
    } == set()
    assert "caBundle" not in kept


def _schema_fields(kind: str) -> set[str]:
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    newest = max(
        (d for d in schemas.iterdir() if d.name.endswith("-local-strict")),
        key=lambda d: tuple(int(x) for x in d.name[1:].split("-")[0].split(".")),
    )
    document = json.loads((newest / f"{kind}-admissionregistration-v1.json").read_text())
    return set(document["properties"])
