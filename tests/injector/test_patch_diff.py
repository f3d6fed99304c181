"""The subtree diff behind the webhook's patch: whatever two JSON documents,
applying the ops to the first gives the second (hypothesis)."""

from __future__ import annotations

from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from injector.core.patch import _diff

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text("ab/~", max_size=3)
named = st.builds(
    lambda name, value: {"name": name, "value": value}, st.sampled_from("abcde"), scalars
)
json_values = st.recursive(
    scalars | named,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text("ab/~n", max_size=3), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(json_values, json_values)
def test_ops_turn_before_into_after(before: Any, after: Any) -> None:
    ops: list[dict[str, Any]] = []
    document = {"root": before}
    _diff(before, after, "/root", ops)
    assert jsonpatch.apply_patch(document, ops) == {"root": after}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(named, max_size=6, unique_by=lambda i: i["name"]),
    st.lists(named, max_size=6, unique_by=lambda i: i["name"]),
)
def test_named_lists(before: list[Any], after: list[Any]) -> None:
    ops: list[dict[str, Any]] = []
    _diff(before, after, "/items", ops)
    assert jsonpatch.apply_patch({"items": before}, ops) == {"items": after}


def test_a_pod_with_20000_volumes_gets_only_what_injection_adds() -> None:
    """The list alignment is linear (dicts, C-level comparisons): at this size a
    list scan per item, as before, took 16 s; the ops are just the additions."""
    from injector.core.model import NamespaceInfo
    from injector.core.patch import apply_patch, make_patch
    from injector.core.render import render
    from injector.core.specs import settings_from_spec
    from tests.golden_tool import BASE_SETTINGS

    n = 20_000
    pod = {
        "metadata": {"name": "p", "annotations": {"sidecar.example.io/inject": "true"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "a",
                    "ports": [{"containerPort": 8080}],
                    "volumeMounts": [{"name": f"v{i}", "mountPath": f"/m/{i}"} for i in range(n)],
                }
            ],
            "volumes": [{"name": f"v{i}", "emptyDir": {}} for i in range(n)],
        },
    }
    rendered = render(pod, NamespaceInfo("default"), settings_from_spec(BASE_SETTINGS)).pod
    ops = make_patch(pod, rendered)
    assert apply_patch(pod, ops) == rendered
    paths = sorted(op["path"] for op in ops)
    assert all(op["op"] == "add" for op in ops)
    assert f"/spec/volumes/{n}" in paths
    assert len(ops) < 10, paths


def test_named_items_removed_and_added_by_name() -> None:
    before = [{"name": n} for n in "abcdef"]
    after = [{"name": "b"}, {"name": "x"}, {"name": "d", "v": 1}, {"name": "f"}]
    ops: list[dict[str, Any]] = []
    _diff(before, after, "/l", ops)
    assert jsonpatch.apply_patch({"l": before}, ops) == {"l": after}
    assert [op["op"] for op in ops].count("remove") == 3
