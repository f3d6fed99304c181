"""The Vault wrapper module is derived from Vault's own go.mod (as ``go mod
edit -json`` parses it): local-path replaces become the published versions
Vault requires, other replaces are copied, and anything else is refused."""

from __future__ import annotations

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
