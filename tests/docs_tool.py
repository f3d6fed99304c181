"""The generated parts of README.md and docs/runtime.md, kept equal to the
contract (``contract.reference``): the annotation table and each role's
variables, between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers.

``python -m tests.docs_tool regenerate`` (``make docs``) rewrites them;
``check`` exits 1 naming the stale ones (tests/contract/test_docs.py does
the same).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from contract.reference import sections

ROOT = Path(__file__).resolve().parent.parent
FILES = (ROOT / "README.md", ROOT / "docs" / "runtime.md")


def _pattern(name: str) -> re.Pattern[str]:
    mark = re.escape(name)
    return re.compile(rf"(<!-- {mark}:start -->\n)(.*?)(<!-- {mark}:end -->)", re.S)


def where(name: str) -> list[Path]:
    return [f for f in FILES if _pattern(name).search(f.read_text())]


def rendered(path: Path) -> str:
    text = path.read_text()
    for name, body in sections().items():
        text = _pattern(name).sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
    return text


def stale() -> list[str]:
    problems = [f"{name}: no markers" for name in sections() if len(where(name)) != 1]
    problems += [str(f.relative_to(ROOT)) for f in FILES if rendered(f) != f.read_text()]
    return problems


def main(argv: list[str]) -> int:
    if argv == ["regenerate"]:
        for path in FILES:
            path.write_text(rendered(path))
        print(f"regenerated {', '.join(str(f.relative_to(ROOT)) for f in FILES)}")
        return 0
    if argv == ["check"]:
        problems = stale()
        if problems:
            print("stale (run `make docs`): " + ", ".join(problems))
            return 1
        return 0
    print("usage: python -m tests.docs_tool regenerate|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
