"""The README's "try it against a dev Vault" example, run as written: a local
API server, a dev Vault reviewing logins with it, ``sidecar secrets --init``
rendering a secret, and everything stopped again."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.secrets.conftest import REAL

ROOT = Path(__file__).resolve().parents[2]


def example() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"Try it against a dev Vault.*?```sh\n(.*?)```", text, re.S)
    assert found, "README.md lost its dev Vault example"
    # The suite already runs in the project's virtual environment.
    return found.group(1).replace("make install\n", "")


@REAL
def test_the_readme_example_renders_a_secret_from_a_dev_vault(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        SIDECAR_E2E_STATE=str(tmp_path / "cluster"),
        SIDECAR_VAULT_STATE=str(tmp_path / "vault"),
    )
    env.pop("KUBECONFIG", None)
    script = "set -euo pipefail\n" + example()
    try:
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        for module in ("e2e.vault_dev", "e2e.cluster"):
            subprocess.run(
                [str(ROOT / ".venv" / "bin" / "python"), "-m", module, "down"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                check=False,
            )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "greeting: hello from Vault"
    assert not (tmp_path / "vault").exists()
    assert not (tmp_path / "cluster").exists()
