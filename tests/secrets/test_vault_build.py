"""The Vault wrapper module is derived from Vault's own go.mod (as ``go mod
edit -json`` parses it): local-path replaces become the published versions
Vault requires, other replaces are copied, and anything else is refused.
CI (``.ci/run``) runs the real-Vault tests, building Vault on first use."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from e2e import vault_build
from e2e.build import BuildError

UPSTREAM: dict[str, Any] = {
    "Go": "1.25.1",
    "Require": [
        {"Path": "github.com/hashicorp/vault/api", "Version": "v1.22.0"},
        {"Path": "github.com/hashicorp/vault/sdk", "Version": "v0.20.0", "Indirect": True},
        {"Path": "k8s.io/api", "Version": "v0.34.1"},
    ],
    "Replace": [
        {"Old": {"Path": "github.com/hashicorp/vault/api"}, "New": {"Path": "./api"}},
        {"Old": {"Path": "github.com/hashicorp/vault/sdk"}, "New": {"Path": "./sdk"}},
        {
            "Old": {"Path": "github.com/99designs/keyring"},
            "New": {"Path": "github.com/Jeffail/keyring", "Version": "v1.2.3"},
        },
        {
            "Old": {"Path": "github.com/ma314smith/signedxml", "Version": "v1.1.1"},
            "New": {"Path": "github.com/moov-io/signedxml", "Version": "v1.1.1"},
        },
    ],
}


def test_local_replaces_become_published_versions_and_the_rest_is_copied() -> None:
    assert vault_build.wrapper_go_mod(UPSTREAM) == (
        "module sidecar-injector.e2e/vault\n"
        "\n"
        "go 1.25.1\n"
        "\n"
        f"require github.com/hashicorp/vault {vault_build.VAULT_VERSION}\n"
        "\n"
        "replace github.com/hashicorp/vault/api => github.com/hashicorp/vault/api v1.22.0\n"
        "replace github.com/hashicorp/vault/sdk => github.com/hashicorp/vault/sdk v0.20.0\n"
        "replace github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3\n"
        "replace github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1\n"
    )


def test_a_local_replace_vault_does_not_require_is_refused() -> None:
    upstream = {
        **UPSTREAM,
        "Replace": [{"Old": {"Path": "github.com/hashicorp/vault/x"}, "New": {"Path": "./x"}}],
    }
    with pytest.raises(BuildError, match=r"github\.com/hashicorp/vault/x is replaced by \./x"):
        vault_build.wrapper_go_mod(upstream)


def test_ci_runs_the_real_vault_tests_and_never_skips_them() -> None:
    """``.ci/run`` calls ``make test``, whose pytest run selects every test of
    tests/ (the real-Vault ones build Vault before the first test), and turns
    their skips (no PostgreSQL) into failures."""
    root = Path(__file__).resolve().parents[2]
    planned = subprocess.run(
        ["make", "-n", "test"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    runs = [line.split(" -m pytest ", 1)[1].split() for line in planned if " -m pytest " in line]
    assert [run for run in runs if run[-1] == "tests"], planned
    assert all("-m" not in run and "-k" not in run for run in runs), planned
    ci = (root / ".ci" / "run").read_text()
    assert re.search(r"^export SIDECAR_TESTS_NO_SKIP=1$", ci, re.M)
    assert re.search(r"^make test$", ci, re.M)
