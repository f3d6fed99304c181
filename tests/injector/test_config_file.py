"""``--config``: SidecarProfile manifests and the injector's own settings document."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract import secrets
from injector.cli.config_file import load
from injector.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "manifests" / "base" / "sidecarprofile-default.yaml"

GOLD = """\
apiVersion: sidecar.example.io/v1alpha1
kind: SidecarProfile
metadata: {name: gold}
spec:
  default: true
  image: registry.example.io/sidecar:2
  vault: {address: https://vault.example.io:8200}
"""
SILVER = """\
apiVersion: sidecar.example.io/v1alpha1
kind: SidecarProfile
metadata: {name: silver}
spec: {image: registry.example.io/sidecar:1}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_shipped_default_profile_loads_with_its_vault_address() -> None:
    settings = load(SHIPPED)
    assert settings.default_profile == "default"
    profile = settings.profile(None)
    assert profile is not None
    assert profile.values.get(secrets.VAULT_ADDR) == "http://vault.vault.svc:8200"
    assert profile.image == "ghcr.io/sidecar-injector/sidecar:0.1.0"
    assert profile.resources_for("proxy").memory_request.text == "64Mi"


def test_several_profiles_the_default_as_in_the_cluster(tmp_path: Path) -> None:
    settings = load(write(tmp_path, SILVER + "---\n" + GOLD))
    assert settings.default_profile == "gold"
    assert sorted(settings.profiles) == ["default", "gold", "silver"]  # built-in default kept
    assert settings.profiles["silver"].image == "registry.example.io/sidecar:1"


def test_a_list_of_profiles(tmp_path: Path) -> None:
    indented = "".join("    " + line + "\n" for line in GOLD.splitlines())
    text = "apiVersion: v1\nkind: List\nitems:\n  - " + indented.lstrip()
    assert load(write(tmp_path, text)).default_profile == "gold"


def test_the_own_format(tmp_path: Path) -> None:
    settings = load(
        write(
            tmp_path,
            "clusterVersion: '1.28'\ndefaultProfile: gold\n"
            "profiles: {gold: {image: registry.example.io/s:1}}\n",
        )
    )
    assert settings.cluster_version == (1, 28)
    assert settings.default_profile == "gold"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOLD.replace("sidecar:2", "sidecar:2\n  nativeSidecars: maybe"), "SidecarProfile gold"),
        (GOLD + "---\n" + GOLD, "SidecarProfile gold is defined twice"),
        (GOLD + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "'ConfigMap'"),
        ("profiles: {default: {colour: red}}\n", "unknown field colour"),
        ("- a\n- b\n", "every document must be a mapping"),
        ("a: [", "not valid YAML"),
        ("profiles: &a {default: {}, x: *a}\n", "YAML aliases make it contain itself"),
        (GOLD.replace("metadata: {name: gold}", "metadata: {}"), "has no metadata.name"),
    ],
)
def test_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    assert message in str(caught.value)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load(tmp_path / "absent.yaml")


def test_an_empty_file_is_the_built_in_settings(tmp_path: Path) -> None:
    assert load(write(tmp_path, "")).default_profile == "default"
