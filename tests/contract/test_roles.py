"""Every knob arrives: for each role, a pod annotated with every row's
``example`` (and a profile setting every profile row) is injected through
``admit()``, and each container the role gets is fed, command and env as
rendered (valueFrom resolved as a kubelet would), to that role's own agent
loader (``sidecar.<role>.settings.load``). Every value the injector planned
must come out of the agent's settings unchanged, and every annotated row
must have reached it with the annotation's value.

``test_a_one_sided_rename_is_caught`` plants the fault this guards against:
the injector writing ``SIDECAR_OUTLIER_5XX`` under another name.
"""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import jsonpatch
import pytest

from contract import layout, secrets
from contract.catalogue import ROLES
from contract.common import RELOAD
from contract.knobs import Knob, Role
from injector.admission.review import admit, parse_review
from injector.core.decision import decide
from injector.core.model import NamespaceInfo, parse_annotations
from injector.core.specs import settings_from_spec
from tests import kubelet

NAMESPACE = "shop"
INIT = {"proxy": None, "secrets": layout.SECRETS_INIT_CONTAINER, "config": None}
KUBELET_ENV = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def _reaches_agent(knob: Knob[Any]) -> bool:
    return bool(knob.env and (knob.annotation or knob.profile))


def _annotations(role: Role) -> dict[str, str]:
    found = {layout.PREFIX + "inject": "true"}
    for knob in role.annotated:
        if knob is role.switch or knob.example is None:
            continue
        key = (knob.annotation or "").replace("NAME", "db")
        found[layout.PREFIX + key] = knob.example
    if role.name == "proxy":  # both directions (the upstream-identity row needs an upstream)
        found.pop(layout.PREFIX + "proxy-upstream", None)
        found[layout.PREFIX + "proxy-upstream"] = "http://payments.shop:15006"
    return found


def _profile(role: Role) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": "registry.example.io/sidecar:1"}
    for knob in role.knobs:
        if knob.profile and not knob.annotation and knob.example is not None:
            head, _, sub = knob.profile.partition(".")
            spec.setdefault(head, {})[sub] = knob.example
    spec.setdefault("vault", {}).setdefault("address", "https://vault.default:8200")
    return {"clusterVersion": "1.30", "profiles": {"default": spec}}


def _pod(role: Role) -> dict[str, Any]:
    app = {"name": "app", "image": "shop:1", "ports": [{"containerPort": 8080}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": NAMESPACE, "annotations": _annotations(role)},
        "spec": {"containers": [app], "securityContext": {"fsGroup": 2000}},
    }


def _admitted(role: Role) -> dict[str, Any]:
    """The pod as the API server would store it after our webhook's patch."""
    pod = _pod(role)
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": NAMESPACE,
            "object": pod,
        },
    }
    settings = settings_from_spec(_profile(role))
    outcome = admit(parse_review(json.dumps(review).encode()), settings, NamespaceInfo(NAMESPACE))
    assert outcome.result == "injected", outcome.message
    patch = json.loads(base64.b64decode(json.loads(outcome.to_json())["response"]["patch"]))
    return dict(jsonpatch.apply_patch(pod, patch))


def _planned(role: Role) -> dict[str, Any]:
    """What the plan gives the role: knob field -> value."""
    pod = _pod(role)
    settings = settings_from_spec(_profile(role))
    plan, _ = decide(pod, NamespaceInfo(NAMESPACE), settings)
    spec = plan.role(role.name)  # type: ignore[union-attr]
    assert spec is not None
    return {k.field: v for k, v in spec.values.items() if k.env}


def _containers(pod: Mapping[str, Any], role: Role) -> list[Mapping[str, Any]]:
    everything = [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
    return [c for c in everything if c.get("command", [])[:2] == ["sidecar", role.name]]


def _agent_settings(container: Mapping[str, Any], role: Role, env: dict[str, str]) -> Any:
    loader: Callable[..., Any] = importlib.import_module(f"sidecar.{role.name}.settings").load
    return loader(container["command"][2:], {**KUBELET_ENV, **env})


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    refs = {
        "metadata.namespace": NAMESPACE,
        "metadata.name": "p",
        "spec.serviceAccountName": "default",
        "limits.cpu": "1",
    }
    return kubelet.container_env(container, refs)


def mismatches(role: Role, container: Mapping[str, Any], env: dict[str, str]) -> list[str]:
    """Rows whose planned value did not reach the agent as planned."""
    settings = _agent_settings(container, role, env)
    init = "--init" in container["command"]
    problems = []
    for field, value in _planned(role).items():
        expected = None if (init and field == RELOAD.field) else value
        got = getattr(settings, field)
        if got != expected:
            problems.append(f"{container['name']}: {field} planned {expected!r}, agent got {got!r}")
    return problems


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_every_row_a_pod_or_profile_sets_has_an_example(role: Role) -> None:
    missing = [k.field for k in role.knobs if _reaches_agent(k) and k.example is None]
    assert not missing, f"add an example= to the rows {missing} of contract/{role.name}.py"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_every_planned_value_reaches_the_agent(role: Role) -> None:
    pod = _admitted(role)
    containers = _containers(pod, role)
    assert containers, f"no {role.name} container injected"
    for container in containers:
        assert mismatches(role, container, _env(container)) == []


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_every_annotation_reaches_the_agent_with_its_value(role: Role) -> None:
    annotations = _pod(role)["metadata"]["annotations"]
    request = parse_annotations(annotations)
    pod = _admitted(role)
    for container in _containers(pod, role):
        settings = _agent_settings(container, role, _env(container))
        for knob in role.annotated:
            if not knob.env or knob not in request.values:
                continue
            if knob is RELOAD and "--init" in container["command"]:
                continue
            assert getattr(settings, knob.field) == request.values.get(knob), knob.field
    assert all(_reaches_agent(k) for k in role.annotated if k.env)
    if role is secrets.ROLE:  # the secret-NAME family, gathered into SIDECAR_SECRETS
        assert settings.secrets == request.secrets


def test_a_one_sided_rename_is_caught() -> None:
    """The planted fault: the injector writes SIDECAR_OUTLIER5XX, the agent reads
    SIDECAR_OUTLIER_5XX; before the contract, 642 tests stayed green."""
    role = next(r for r in ROLES if r.name == "proxy")
    (container,) = _containers(_admitted(role), role)
    env = _env(container)
    assert mismatches(role, container, env) == []
    env["SIDECAR_OUTLIER5XX"] = env.pop("SIDECAR_OUTLIER_5XX")
    assert mismatches(role, container, env) == [
        "sidecar-proxy: outlier_5xx planned 3, agent got None"
    ]
