"""What is a pod (``injector.pods``) through ``inject``/``explain``: every kind a
manifest can hold, Lists, objects we do not handle (never silent), skips that
are said, malformed and hostile input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from injector.cli.main import main
from injector.core.pods import check_pod, find_pods

P = "sidecar.example.io/"
STATUS = P + "status"
ASK = {P + "inject": "true", P + "proxy-inbound-port": "8080"}


def tpl(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    containers = [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}]
    return {
        "metadata": {"annotations": annotations if annotations is not None else ASK},
        "spec": {"containers": containers, **spec},
    }


def obj(api: str, kind: str, name: str = "x", **body: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, **body}


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *args: str) -> Any:
    path = tmp_path / "in.yaml"
    path.write_text(text)
    code = main([args[0] if args else "inject", "-f", str(path), *args[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def dump(*documents: Any) -> str:
    return yaml.safe_dump_all(documents)


def injected(pod_or_template: Any) -> bool:
    return STATUS in (pod_or_template.get("metadata") or {}).get("annotations", {})


@pytest.mark.parametrize(
    ("document", "path"),
    [
        (obj("v1", "ReplicationController", spec={"template": tpl()}), ("spec", "template")),
        (obj("v1", "PodTemplate", template=tpl()), ("template",)),
        (obj("extensions/v1beta1", "Deployment", spec={"template": tpl()}), ("spec", "template")),
        (obj("apps/v1beta2", "DaemonSet", spec={"template": tpl()}), ("spec", "template")),
        (obj("batch/v1beta1", "CronJob", spec={"jobTemplate": {"spec": {"template": tpl()}}}),
         ("spec", "jobTemplate", "spec", "template")),
        (obj("v1", "List", items=[obj("apps/v1", "StatefulSet", spec={"template": tpl()})]),
         ("items", 0, "spec", "template")),
        (obj("apps/v1", "DeploymentList", items=[obj("apps/v1", "Deployment",
                                                     spec={"template": tpl()})]),
         ("items", 0, "spec", "template")),
    ],
)  # fmt: skip
def test_every_built_in_kind_is_injected(
    document: Any, path: tuple[Any, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(tmp_path, capsys, dump(document))
    assert (code, err) == (0, "")
    result: Any = yaml.safe_load(out)
    for key in path:
        result = result[key]
    assert injected(result)
    assert "namespace" not in result["metadata"]  # what rendering needed stays out
    assert "ownerReferences" not in result["metadata"]


def test_a_list_of_lists_is_injected_item_by_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inner = obj("v1", "List", items=[obj("batch/v1", "Job", "j", spec={"template": tpl()})])
    outer = obj(
        "v1", "List", items=[obj("v1", "ConfigMap", "c"), inner, obj("apps/v1", "Deployment",
                             "d", spec={"template": tpl({})})]
    )  # fmt: skip
    code, out, err = run(tmp_path, capsys, dump(outer))
    assert (code, err) == (0, "")
    result = yaml.safe_load(out)
    assert result["items"][0] == obj("v1", "ConfigMap", "c")
    assert injected(result["items"][1]["items"][0]["spec"]["template"])
    assert not injected(result["items"][2]["spec"]["template"])  # did not ask
    code, out, _ = run(tmp_path, capsys, dump(outer), "explain")
    reports = list(yaml.safe_load_all(out))
    assert [(r["object"], r["injected"]) for r in reports] == [
        ("Job/j", True),
        ("Deployment/d", False),
    ]


@pytest.mark.parametrize(
    ("document", "named", "where"),
    [
        (obj("apps.openshift.io/v1", "DeploymentConfig", "dc", spec={"template": tpl()}),
         "DeploymentConfig/dc (apps.openshift.io/v1)", "spec.template"),
        (obj("argoproj.io/v1alpha1", "Rollout", "ro", spec={"template": tpl()}),
         "Rollout/ro (argoproj.io/v1alpha1)", "spec.template"),
        (obj("serving.knative.dev/v1", "Service", "kn", spec={"template": tpl()}),
         "Service/kn (serving.knative.dev/v1)", "spec.template"),
        (obj("example.io/v1", "Thing", "t", spec={"pods": [{"x": tpl()}]}),
         "Thing/t (example.io/v1)", "spec.pods[0].x"),
        (obj("example.io/v1", "Deployment", "fake", spec={"template": tpl()}),
         "Deployment/fake (example.io/v1)", "spec.template"),
    ],
)  # fmt: skip
def test_an_unhandled_pod_template_is_named_never_silent(
    document: Any, named: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(tmp_path, capsys, dump(document))
    assert code == 0
    assert yaml.safe_load(out) == document
    assert err.startswith(f"warning: {named} (document 1) holds a pod template at {where} ")
    assert "inject does not change" in err
    code, out, _ = run(tmp_path, capsys, dump(document), "explain")
    report = yaml.safe_load(out)
    assert report["injected"] is False
    assert report["why"].startswith(named)


def test_a_pod_in_another_api_version_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = {**obj("v2", "Pod"), "spec": tpl()["spec"]}
    code, _, err = run(tmp_path, capsys, dump(document))
    assert code == 0
    assert "Pod/x (v2) (document 1) has containers but is not a Pod of apiVersion v1" in err


def test_not_an_object_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = dump(obj("v1", "ConfigMap"), {"metadata": {"annotations": ASK}})
    code, out, err = run(tmp_path, capsys, text)
    assert code == 0
    assert len(list(yaml.safe_load_all(out))) == 2
    assert err.startswith("warning: document 2 is not a Kubernetes object (it has no kind)")


def test_a_workload_without_a_template_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(tmp_path, capsys, dump(obj("apps/v1", "Deployment", "d", spec={})))
    assert code == 0
    assert "Deployment/d has no pod template at spec.template" in err


@pytest.mark.parametrize(
    ("spec", "namespace", "said"),
    [
        ({"hostNetwork": True}, "shop", "(host-network): hostNetwork pods share the node's ports"),
        ({}, "kube-system", "(system-namespace): namespace kube-system is never injected"),
    ],
)
def test_a_skipped_pod_that_asked_is_said(
    spec: dict[str, Any],
    namespace: str,
    said: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = obj("apps/v1", "Deployment", "d", spec={"template": tpl(**spec)})
    document["metadata"]["namespace"] = namespace
    code, out, err = run(tmp_path, capsys, dump(document))
    assert code == 0
    assert yaml.safe_load(out) == document
    assert err.startswith(f"note: Deployment/d: skipped {said}")


def test_a_pod_that_did_not_ask_is_passed_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = [tpl({}), tpl({P + "inject": "false"}, hostNetwork=True)]
    text = dump(*[obj("apps/v1", "Deployment", f"d{i}", spec={"template": t}) for i, t in
                  enumerate(quiet)])  # fmt: skip
    assert run(tmp_path, capsys, text)[::2] == (0, "")


def test_a_malformed_template_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = obj("apps/v1", "Deployment", "d", spec={"template": {"spec": {"containers": "app"}}})
    code, out, err = run(tmp_path, capsys, dump(bad))
    assert (code, out) == (1, "")
    assert err == "error: Deployment/d: spec.template.spec.containers: expected a non-empty list\n"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    assert run(tmp_path, capsys, dump(pod))[2] == (
        "error: Pod/p: spec.containers: expected a non-empty list\n"
    )
    listed = obj("v1", "List", items=[bad])
    assert run(tmp_path, capsys, dump(listed))[2] == (
        "error: Deployment/d: items[0].spec.template.spec.containers: expected a non-empty list\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [1, *a]\n", "YAML aliases make it contain itself"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n"
                for i in range(8)
            ),
            "YAML aliases expand it to more than 5,000,000 values",
        ),
        ("[" * 1500 + "]" * 1500, "nested too deeply"),
    ],
)
def test_hostile_yaml_is_refused_quickly(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(tmp_path, capsys, text)
    assert (code, out) == (2, "")
    assert message in err
    assert "Traceback" not in err


def test_find_pods_builds_the_pod_the_controller_creates() -> None:
    cron = obj("batch/v1", "CronJob", "nightly",
               spec={"jobTemplate": {"spec": {"template": tpl()}}})  # fmt: skip
    (site,) = find_pods(cron, "document 1", "shop").sites
    assert site.label == "CronJob/nightly"
    assert site.pod["metadata"]["namespace"] == "shop"
    assert site.pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert site.pod["spec"] == tpl()["spec"]
    assert check_pod(site.pod, "x") is site.pod
    assert "ownerReferences" not in json.dumps(cron)  # the input is not changed
