"""Every YAML example in README.md and docs/*.md, run as a user would.

Each ```yaml block is preceded by a comment stating its result:

* ``<!-- example: injected ROLE,ROLE -->``: ``sidecar-injector inject`` with
  the shipped default profile exits 0, says nothing on stderr, and every pod
  (template) in it gets exactly these roles;
* ``<!-- example: denied "TEXT" -->``: ``inject`` exits 1, prints no
  manifests, and its error contains TEXT;
* ``<!-- example: unchanged -->``: ``inject`` exits 0, says nothing, and
  prints the same objects;
* ``<!-- example: config -->``: a ``--config`` file: ``inject --config`` it
  with the README's Deployment example exits 0.

A block without such a comment fails the suite, so a new example cannot be
left untested.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from injector.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEFAULT_PROFILE = ROOT / "manifests" / "base" / "sidecarprofile-default.yaml"
STATUS = "sidecar.example.io/status"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```yaml[ \t]*$")
MARKER = re.compile(r"<!-- example: (?P<kind>injected|denied|unchanged|config)(?P<arg>.*?) -->")


@dataclass(frozen=True)
class Example:
    where: str  # file:line of the fence
    kind: str
    arg: str
    text: str


def examples(path: Path) -> list[Example]:
    lines = path.read_text().splitlines()
    found: list[Example] = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        indent = fence["indent"]
        end = index + 1
        while lines[end].strip() != "```":
            end += 1
        body = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end]) + "\n"
        previous = lines[index - 1].strip() if index else ""
        marker = MARKER.fullmatch(previous)
        where = f"{path.relative_to(ROOT)}:{index + 1}"
        if marker is None:
            found.append(Example(where, "unmarked", "", body))
        else:
            found.append(Example(where, marker["kind"], marker["arg"].strip(), body))
        index = end + 1
    return found


ALL = [example for path in DOCS for example in examples(path)]


def inject(tmp_path: Path, text: str, *extra: str) -> tuple[int, str, str]:
    source = tmp_path / "example.yaml"
    source.write_text(text)
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        import sys

        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = stdout, stderr
        try:
            code = main(["inject", "-f", str(source), *extra])
        finally:
            sys.stdout, sys.stderr = saved
    return code, out.read_text(), err.read_text()


def pod_templates(document: dict[str, object]) -> list[dict[str, object]]:
    """The pods and pod templates of one object (the shapes the examples use)."""
    if document.get("kind") == "Pod":
        return [document]
    spec = document.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    return [template] if isinstance(template, dict) else []


def test_the_docs_have_examples() -> None:
    assert len(ALL) >= 5
    assert any(e.kind == "injected" for e in ALL)


@pytest.mark.parametrize("example", ALL, ids=lambda e: e.where)
def test_example_gives_the_documented_result(example: Example, tmp_path: Path) -> None:
    assert example.kind != "unmarked", (
        f"{example.where}: a yaml example without a comment stating its result, e.g. "
        "<!-- example: injected proxy --> on the line above the fence (see this test's docstring)"
    )
    profile = ("--config", str(DEFAULT_PROFILE))
    if example.kind == "config":
        readme_deployment = next(e for e in ALL if e.kind == "injected").text
        config = tmp_path / "config.yaml"
        config.write_text(example.text)
        code, out, err = inject(tmp_path, readme_deployment, "--config", str(config))
        assert (code, err) == (0, ""), f"{example.where}: --config {example.text}\n{err}"
        assert STATUS in out
        return
    code, out, err = inject(tmp_path, example.text, *profile)
    if example.kind == "denied":
        expected = json.loads(example.arg)
        assert code == 1, f"{example.where}: not denied:\n{out}{err}"
        assert out == ""
        assert expected in err, f"{example.where}: the error is not as documented:\n{err}"
        return
    assert (code, err) == (0, ""), f"{example.where}: exit {code}\n{err}"
    given = [d for d in yaml.safe_load_all(example.text) if d is not None]
    produced = [d for d in yaml.safe_load_all(out) if d is not None]
    if example.kind == "unchanged":
        assert produced == given, f"{example.where}: inject changed it"
        return
    roles = [r.strip() for r in example.arg.split(",")]
    pods = [pod for document in produced for pod in pod_templates(document)]
    assert pods, f"{example.where}: no pod or pod template in the example"
    for pod in pods:
        annotations = pod["metadata"].get("annotations") or {}  # type: ignore[index, union-attr]
        assert STATUS in annotations, f"{example.where}: not injected"
        assert json.loads(annotations[STATUS])["roles"] == roles, example.where
