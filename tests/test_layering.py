"""Import layering (docs/ENGINEERING.md):

* ``sidecar/`` never imports ``injector/``;
* ``injector/`` imports from ``sidecar`` only the pure parsers ``sidecar.units``,
  ``sidecar.reload`` and ``sidecar.identity.spiffe``;
* the pure core (``injector.core.model``, ``render`` and what they build on) imports
  no web framework, operator framework, Kubernetes client or network/process
  module, directly or through its imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_FROM_SIDECAR = {"sidecar.units", "sidecar.reload", "sidecar.identity.spiffe"}
PURE = [
    "injector.core.model",
    "injector.core.render",
    "injector.core.plan",
    "injector.core.containers",
    "injector.core.annotations",
    "injector.core.values",
    "injector.core.quantities",
    "injector.core.patch",
]
FRAMEWORKS = ["fastapi", "starlette", "kopf", "kubernetes", "uvicorn", "httpx", "aiohttp"]
DIRECT_IO = {"socket", "subprocess", "urllib.request", "http.client", "asyncio", "requests"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("sidecar"), ids=lambda p: str(p.relative_to(ROOT)))
def test_sidecar_never_imports_injector(path: Path) -> None:
    bad = {name for name in imports(path) if name == "injector" or name.startswith("injector.")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", modules("injector"), ids=lambda p: str(p.relative_to(ROOT)))
def test_injector_imports_only_the_pure_sidecar_parsers(path: Path) -> None:
    names = imports(path)
    modules_used = {n for n in names if n == "sidecar" or n.startswith("sidecar.")}
    bad = {
        n
        for n in modules_used
        if not any(n == ok or n.startswith(ok + ".") for ok in ALLOWED_FROM_SIDECAR)
    }
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)} from sidecar"


@pytest.mark.parametrize("module", PURE)
def test_pure_core_imports_no_framework_or_io(module: str) -> None:
    path = ROOT / (module.replace(".", "/") + ".py")
    direct = {n for n in imports(path) if n.split(".")[0] in FRAMEWORKS or n in DIRECT_IO}
    assert not direct, f"{module} imports {sorted(direct)}"
    probe = (
        f"import sys, {module}\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "", f"importing {module} loads {out.stdout.strip()}"
