"""Every golden case: the committed output is current (made through the CLI's
own code and checked against the webhook's ``admit``, see tests/golden_tool.py),
no output is orphaned, injection is idempotent, the JSON patch reproduces it,
and the output passes the Kubernetes schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from injector.core.patch import apply_patch, make_patch
from injector.core.render import render
from tests import golden_tool
from tests.golden_tool import (
    Disagreement,
    _case_text,
    case_namespace,
    case_settings,
    cases,
    find_pod,
    load_case,
    orphans,
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


def test_no_output_is_orphaned() -> None:
    assert orphans() == [], "outputs without a case: run `make golden` (it removes them)"


def test_an_orphaned_output_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = next(c for c in CASES if c.stem == "no-annotations")
    (tmp_path / case.name).write_text(case.read_text())
    (tmp_path / output_path(case).name).write_text(output_path(case).read_text())
    monkeypatch.setattr(golden_tool, "GOLDEN_DIR", tmp_path)
    assert golden_tool.check() == 0
    (tmp_path / "renamed-away.injected.yaml").write_text("outcome: injected\n")
    assert golden_tool.check() == 1
    assert "renamed-away.injected.yaml (orphaned)" in capsys.readouterr().out


def test_the_shells_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """A webhook whose patch loses an operation fails its case."""
    case = load_case(next(c for c in CASES if c.stem == "all-roles-native"))
    assert run_case(case)["outcome"] == "injected"

    def lossy(obj: Any, response: dict[str, Any]) -> Any:
        return obj

    monkeypatch.setattr(golden_tool, "patched", lossy)
    with pytest.raises(Disagreement, match="differ in pod"):
        run_case(case)


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
            if container["name"] == "sidecar-capture-init":
                # The one exception, and only where the pod asked for capture:
                # user 0 with NET_ADMIN and NET_RAW, nothing else (README, Pod Security).
                assert result.plan is not None
                assert result.plan.traffic.capture
                assert (sc["runAsNonRoot"], sc["runAsUser"]) == (False, 0)
                assert sc["capabilities"] == {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}
                assert sc["privileged"] is False
            else:
                assert sc["runAsNonRoot"] is True
                assert sc["runAsUser"] > 0
                assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            resources = container["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    assert seen > 30
