"""``inject`` and the webhook on the same inputs must agree.

Each manifest below is given to ``sidecar-injector inject``; each of its pod
templates is also turned, by this test and independently of the injector's
code, into the pod its controller creates (template metadata and spec, the
namespace, an ownerReference to the controller: a Deployment's pods are owned
by a ReplicaSet, a CronJob's by a Job, ...) and sent to the webhook as an
AdmissionReview. The patched pod must equal what ``inject`` wrote into the
template; a denial must be a denial with the same message in both.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from injector.admission.webhook import Webhook
from injector.cli.main import main
from injector.core.model import NamespaceInfo
from injector.core.specs import settings_from_spec
from tests.injector.reviews import patched, review
from tests.injector.served import Served

P = "sidecar.example.io/"
ALL_ROLES = {
    P + "inject": "true",
    P + "proxy-upstream": "http://payments:8080",
    P + "secrets-role": "shop",
    P + "secret-db": "database/creds/shop",
    P + "config-source": "configmap:shop",
}
LABELS = {"shop": {P + "injection": "enabled"}}


def template(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"app": "x"}}
    if annotations is not None:
        meta["annotations"] = annotations
    containers = [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}]
    return {"metadata": meta, "spec": {"containers": containers, **spec}}


def workload(kind: str, api: str, name: str, tpl: dict[str, Any], ns: str = "shop") -> Any:
    spec: dict[str, Any] = {"template": tpl}
    if kind == "CronJob":
        spec = {"schedule": "@daily", "jobTemplate": {"spec": {"template": tpl}}}
    elif kind != "Job":
        spec["selector"] = {"matchLabels": {"app": "x"}}
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


JOB = template(ALL_ROLES, restartPolicy="Never")
# (manifest, [(path of a pod template, path of its workload, the pods' owner apiVersion
# and kind)]); a Pod: path ().
Site = tuple[tuple[Any, ...], tuple[Any, ...], str, str]
CASES: dict[str, tuple[Any, list[Site]]] = {
    "pod": (
        {"apiVersion": "v1", "kind": "Pod", **template(ALL_ROLES),
         "metadata": {"name": "p", "namespace": "shop", "annotations": ALL_ROLES}},
        [((), (), "", "")],
    ),
    "deployment": (workload("Deployment", "apps/v1", "web", template(ALL_ROLES)),
                   [(("spec", "template"), (), "apps/v1", "ReplicaSet")]),
    "deployment-extensions-v1beta1": (
        workload("Deployment", "extensions/v1beta1", "old", template(ALL_ROLES)),
        [(("spec", "template"), (), "apps/v1", "ReplicaSet")],
    ),
    "statefulset": (workload("StatefulSet", "apps/v1", "db", template(ALL_ROLES)),
                    [(("spec", "template"), (), "apps/v1", "StatefulSet")]),
    "daemonset": (workload("DaemonSet", "apps/v1", "agent", template(ALL_ROLES)),
                  [(("spec", "template"), (), "apps/v1", "DaemonSet")]),
    "replicaset": (workload("ReplicaSet", "apps/v1", "rs", template(ALL_ROLES)),
                   [(("spec", "template"), (), "apps/v1", "ReplicaSet")]),
    "replicationcontroller": (
        workload("ReplicationController", "v1", "rc", template(ALL_ROLES)),
        [(("spec", "template"), (), "v1", "ReplicationController")],
    ),
    "job": (workload("Job", "batch/v1", "report", JOB),
            [(("spec", "template"), (), "batch/v1", "Job")]),
    "cronjob": (
        workload("CronJob", "batch/v1", "nightly", JOB),
        [(("spec", "jobTemplate", "spec", "template"), (), "batch/v1", "Job")],
    ),
    "podtemplate": (
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t", "namespace": "shop"},
         "template": template(ALL_ROLES)},
        [(("template",), (), "", "")],
    ),
    "namespace-label-opt-in": (workload("Deployment", "apps/v1", "plain", template()),
                               [(("spec", "template"), (), "apps/v1", "ReplicaSet")]),
    "other-namespace-not-opted-in": (
        workload("Deployment", "apps/v1", "plain", template(), ns="elsewhere"),
        [(("spec", "template"), (), "apps/v1", "ReplicaSet")],
    ),
    "host-network-skipped": (
        workload("Deployment", "apps/v1", "hn", template(ALL_ROLES, hostNetwork=True)),
        [(("spec", "template"), (), "apps/v1", "ReplicaSet")],
    ),
    "list-nested": (
        {"apiVersion": "v1", "kind": "List", "items": [
            workload("Deployment", "apps/v1", "a", template(ALL_ROLES)),
            {"apiVersion": "v1", "kind": "List", "items": [
                workload("Job", "batch/v1", "b", JOB),
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
            ]},
        ]},
        [(("items", 0, "spec", "template"), ("items", 0), "apps/v1", "ReplicaSet"),
         (("items", 1, "items", 0, "spec", "template"), ("items", 1, "items", 0), "batch/v1",
          "Job")],
    ),
}  # fmt: skip


def at(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def controller_pod(
    manifest: Any, path: tuple[Any, ...], owner_path: tuple[Any, ...], api: str, kind: str
) -> Any:
    """The pod the controller creates from the template at ``path`` (built by hand)."""
    if not path:  # a Pod: as it is
        return copy.deepcopy(manifest)
    tpl = copy.deepcopy(at(manifest, path))
    namespace = at(manifest, owner_path)["metadata"].get("namespace")
    metadata = {**tpl.get("metadata", {}), "namespace": namespace}
    if kind:
        metadata["ownerReferences"] = [
            {"apiVersion": api, "kind": kind, "name": "x-1", "uid": "u", "controller": True}
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": tpl["spec"]}


SPEC = {"profiles": {"default": {"image": "registry.example.io/sidecar:1",
                                 "vault": {"address": "http://vault:8200"}}}}  # fmt: skip


def run_inject(
    manifest: Any, version: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, Any, str]:
    source, config = tmp_path / "manifest.yaml", tmp_path / "config.yaml"
    source.write_text(yaml.safe_dump(manifest))
    config.write_text(yaml.safe_dump(SPEC))
    args = ["inject", "-f", str(source), "--cluster-version", version, "-n", "shop"]
    args += ["--namespace-label", f"{P}injection=enabled", "--config", str(config)]
    code = main(args)
    out, err = capsys.readouterr()
    return code, (yaml.safe_load(out) if code == 0 else None), err


@pytest.mark.parametrize("version", ["1.28", "1.30"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_inject_and_the_webhook_agree(
    name: str, version: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, sites = CASES[name]
    settings = settings_from_spec({**SPEC, "clusterVersion": version})
    labels = {**LABELS}
    webhook = Webhook(lambda: settings, namespaces=lambda n: NamespaceInfo(n, labels.get(n, {})))
    code, injected, err = run_inject(manifest, version, tmp_path, capsys)
    assert code == 0, err
    with Served(webhook) as client:
        answers = [
            client.post("/mutate", json=review(pod, namespace=pod["metadata"]["namespace"]))
            for pod in (controller_pod(manifest, *site) for site in sites)
        ]
    for (path, owner_path, api, kind), answer in zip(sites, answers, strict=True):
        pod = controller_pod(manifest, path, owner_path, api, kind)
        response = answer.json()["response"]
        assert response["allowed"], response
        from_webhook = patched(pod, response)
        from_cli = at(injected, path)
        assert from_cli["spec"] == from_webhook["spec"], f"{name} {path}"
        cli_annotations = from_cli.get("metadata", {}).get("annotations")
        assert cli_annotations == from_webhook["metadata"].get("annotations"), f"{name} {path}"


@pytest.mark.parametrize("kind", ["Deployment", "Job", "CronJob", "ReplicationController"])
def test_a_denial_is_the_same_denial(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = template({P + "inject": "true", P + "proxy-rate-limit": "lots"})
    api = {"Job": "batch/v1", "CronJob": "batch/v1", "ReplicationController": "v1"}
    manifest = workload(kind, api.get(kind, "apps/v1"), "bad", bad)
    code, _, err = run_inject(manifest, "1.30", tmp_path, capsys)
    assert code == 1
    settings = settings_from_spec({**SPEC, "clusterVersion": "1.30"})
    path = (
        ("spec", "jobTemplate", "spec", "template") if kind == "CronJob" else ("spec", "template")
    )
    pod = controller_pod(manifest, path, (), "batch/v1", "Job")
    with Served(Webhook(lambda: settings)) as client:
        response = client.post("/mutate", json=review(pod, namespace="shop")).json()["response"]
    assert response["allowed"] is False
    assert f"error: {kind}/bad: {response['status']['message']}" in err
