"""Every golden case: the committed output is current, injection is idempotent,
the JSON patch reproduces it, and the output passes the Kubernetes schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from injector.core.patch import apply_patch, make_patch
from injector.core.render import render
from tests.golden_tool import (
    _case_text,
    case_namespace,
    case_settings,
    cases,
    find_pod,
    load_case,
    output_path,
    run_case,
)

CASES = cases()
K8S_VERSION = "1.30"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_golden_file_is_current(case: Path) -> None:
    out = output_path(case)
    assert out.exists(), f"{out.name} missing: run `make golden`"
    assert out.read_text() == _case_text(case), f"{out.name} is stale: run `make golden`"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_injection_is_idempotent_and_patch_reproduces_it(case: Path) -> None:
    data = load_case(case)
    site = find_pod(data)
    if site is None:
        return
    outcome = run_case(data)
    if outcome["outcome"] != "injected":
        return
    settings, namespace = case_settings(data), case_namespace(data)
    first = render(site.pod, namespace, settings)
    again = render(first.pod, namespace, settings)
    assert again.pod == first.pod
    assert again.warnings == first.warnings
    assert make_patch(first.pod, again.pod) == []
    assert apply_patch(site.pod, make_patch(site.pod, first.pod)) == first.pod
    # the input is never mutated
    assert load_case(case)["object"] == data["object"]


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_output_is_a_valid_kubernetes_object(case: Path) -> None:
    outcome = run_case(load_case(case))
    obj: Any = outcome.get("object")
    if obj is None:
        assert outcome["outcome"] == "denied"
        assert outcome["message"]
        return
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{case.stem}: {exc.message} at {list(exc.path)}")


def test_every_injected_container_is_locked_down() -> None:
    seen = 0
    for case in CASES:
        data = load_case(case)
        site = find_pod(data)
        if site is None or run_case(data)["outcome"] != "injected":
            continue
        result = render(site.pod, case_namespace(data), case_settings(data))
        spec = result.pod["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            if not container["name"].startswith("sidecar-"):
                continue
            seen += 1
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert sc["runAsUser"] > 0
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            resources = container["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    assert seen > 30
