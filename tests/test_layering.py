"""Import layering: the contracts in pyproject.toml ``[tool.importlinter]``
(docs/ENGINEERING.md "Layers"), checked transitively by import-linter.

* ``injector.cli`` > ``injector.operator`` > ``injector.admission`` >
  ``injector.core``: each layer imports only those below it;
* the sidecar roles never import each other;
* ``contract`` imports the standard library only (an allowlist, checked here
  too) and neither side; the agent never imports the injector; the injector
  meets the agent only through ``contract``;
* ``injector.core`` does no I/O: no framework, client, socket, thread or
  process module, directly or through its imports.

Each kind of contract is shown to fail once, on a copy of the tree with one
bad import planted.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contract", "injector", "sidecar")
LINT = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(LINT, capture_output=True, text=True, cwd=cwd, check=False)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_every_import_contract_is_kept() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("path", sorted((ROOT / "contract").rglob("*.py")), ids=lambda p: p.name)
def test_contract_imports_only_the_standard_library(path: Path) -> None:
    allowed = set(sys.stdlib_module_names) | {"__future__", "contract"}
    bad = sorted(n for n in imports(path) if n.split(".")[0] not in allowed)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_importing_the_contract_loads_neither_side_nor_a_third_party_package() -> None:
    probe = (
        "import importlib, pkgutil, sys\n"
        "before = set(sys.modules)\n"
        "import contract\n"
        "for info in pkgutil.walk_packages(contract.__path__, 'contract.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(','.join(sorted(m for m in set(sys.modules) - before if m.split('.')[0] not in "
        "sys.stdlib_module_names and m.split('.')[0] != 'contract')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


PLANTS = [
    # (file, line planted, contract named in the failure)
    ("injector/core/render.py", "from injector.admission import review", "injector layers"),
    ("sidecar/config/files_plant.py", "import sidecar.proxy.admin", "roles are independent"),
    ("contract/plant.py", "import threading", "contract: stdlib only"),
    ("injector/core/plant.py", "import contract.plant_io", "injector.core does no I/O"),
]


@pytest.mark.parametrize(("where", "line", "contract"), PLANTS, ids=[p[2] for p in PLANTS])
def test_a_planted_import_breaks_its_contract(
    tmp_path: Path, where: str, line: str, contract: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "contract" / "plant_io.py").write_text(
        "import socket\n"
    )  # transitive: core -> here
    target = tmp_path / where
    target.write_text((target.read_text() if target.exists() else "") + f"\n{line}\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    broken = result.stdout[result.stdout.index("Broken contracts") :]
    assert contract in broken, result.stdout
