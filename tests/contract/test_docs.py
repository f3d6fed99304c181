"""The README's annotation table, ``sidecar-injector annotations`` and
docs/runtime.md's variable tables come from the contract's rows."""

from __future__ import annotations

from pathlib import Path

from contract.catalogue import ANNOTATIONS, FIXED_KEYS
from contract.reference import annotation_table, annotation_text, runtime_table
from tests import docs_tool


def test_readme_and_runtime_md_are_generated_from_the_rows() -> None:
    assert docs_tool.stale() == [], "run `make docs` and review the diff"


def test_a_hand_edited_table_is_stale(tmp_path: Path) -> None:
    for source in docs_tool.FILES:
        copy = tmp_path / source.name
        copy.write_text(source.read_text().replace("SIDECAR_OUTLIER_5XX", "SIDECAR_OUTLIER5XX"))
        copy.write_text(copy.read_text().replace("| `proxy-retries` |", "| `proxy-retry` |"))
        assert docs_tool.rendered(copy) != copy.read_text(), source.name


def test_every_annotation_is_in_both_references() -> None:
    table, text = annotation_table(), annotation_text()
    for knob in ANNOTATIONS:
        assert f"| `{knob.annotation}` |" in table
        assert f"sidecar.example.io/{knob.annotation}\n" in text
    assert len(ANNOTATIONS) == table.count("\n| `")
    assert "proxy-image" in FIXED_KEYS


def test_every_variable_is_documented_once() -> None:
    tables = runtime_table(None) + "".join(
        runtime_table(name) for name in ("proxy", "secrets", "config")
    )
    assert tables.count("`SIDECAR_OUTLIER_5XX`") == 1
    assert tables.count("`SIDECAR_AGENT_ADDR`") == 1
