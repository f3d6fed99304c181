"""The subtree diff behind the webhook's patch: whatever two JSON documents,
applying the ops to the first gives the second (hypothesis)."""

from __future__ import annotations

from typing import Any

import jsonpatch
from hypothesis import assume, given, settings
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
    # jsonpatch 1.33's own list diff can emit moves that do not apply (e.g.
    # [None, {"name": "a", "value": None}] -> [[], {}, None, None]); our diff
    # hands leftovers to it, so it can be no better on those inputs.
    assume(_jsonpatch_handles(before, after))
    ops: list[dict[str, Any]] = []
    document = {"root": before}
    _diff(before, after, "/root", ops)
    assert jsonpatch.apply_patch(document, ops) == {"root": after}


def _jsonpatch_handles(before: Any, after: Any) -> bool:
    try:
        return bool(jsonpatch.apply_patch(before, jsonpatch.make_patch(before, after)) == after)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
        return False


@settings(max_examples=200, deadline=None)
@given(
    st.lists(named, max_size=6, unique_by=lambda i: i["name"]),
    st.lists(named, max_size=6, unique_by=lambda i: i["name"]),
)
def test_named_lists(before: list[Any], after: list[Any]) -> None:
    ops: list[dict[str, Any]] = []
    _diff(before, after, "/items", ops)
    assert jsonpatch.apply_patch({"items": before}, ops) == {"items": after}
