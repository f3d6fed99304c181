"""Settings and profiles from SidecarProfile-shaped specs."""

from __future__ import annotations

import pytest

from contract import proxy
from contract import secrets as secrets_rows
from injector.core.settings import (
    Profile,
    Settings,
    image_allowed,
    image_registry,
    parse_version,
)
from injector.core.specs import profile_from_spec, settings_from_spec
from injector.errors import ConfigError


def test_defaults_are_usable() -> None:
    settings = Settings()
    profile = settings.profile(None)
    assert profile is not None
    assert profile.resources_for("proxy").cpu_limit.text == "1"
    assert settings.native_sidecars_supported is False
    assert settings.replace(cluster_version=(1, 29)).native_sidecars_supported is True


def test_profile_spec_round_trip() -> None:
    profile = profile_from_spec(
        "gold",
        {
            "image": "registry.example.io/sidecar:1",
            "images": {"proxy": "registry.example.io/proxy:1"},
            "resources": {"secrets": {"limits": {"memory": "128Mi"}}},
            "bounds": {"maxCpu": "4"},
            "vault": {
                "address": "https://vault:8200",
                "role": "app",
                "authPath": "k8s",
                "caBundle": secrets_rows.EXAMPLE_CA,
            },
            "proxy": {"timeout": "5s", "retries": 3, "retryOn": "5xx"},
            "nativeSidecars": "true",
            "secretsMode": "init",
        },
    )
    assert profile.image_for("proxy") == "registry.example.io/proxy:1"
    assert profile.image_for("config") == "registry.example.io/sidecar:1"
    assert profile.resources_for("secrets").memory_limit.text == "128Mi"
    assert profile.resources_for("secrets").memory_request.text == "32Mi"
    assert profile.registries() == ("registry.example.io",)
    assert profile.values.get(proxy.RETRIES) == 3
    assert profile.values.get(proxy.TIMEOUT) == 5.0
    assert profile.native_sidecars == "true"
    assert profile.values.get(secrets_rows.VAULT_CA_BUNDLE) == secrets_rows.EXAMPLE_CA


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"imagePullPolicy": "Sometimes"}, "imagePullPolicy: 'Sometimes' is not one of"),
        ({"colour": "red"}, "unknown field colour"),
        ({"proxy": {"retries": 11}}, "proxy.retries"),
        ({"proxy": {"retryOn": "always"}}, "retry"),
        ({"vault": {"address": "vault:8200"}}, "vault.address"),
        ({"vault": {"caBundle": "MIIB..."}}, "vault.caBundle"),
        ({"vault": {"caBundle": secrets_rows.EXAMPLE_CA * 200}}, "more than 64 KiB"),
        ({"resources": {"proxy": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}}, "exceeds"),
        ({"bounds": {"maxMemory": "1000m"}}, "milli-bytes"),
        ({"nativeSidecars": "sometimes"}, "nativeSidecars"),
    ],
)
def test_bad_profile_specs_name_the_field(spec: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        profile_from_spec("p", spec)
    assert fragment in str(info.value)
    assert str(info.value).startswith("profile p")


def test_default_profile_must_exist() -> None:
    with pytest.raises(ConfigError, match="default profile 'gold'"):
        settings_from_spec({"defaultProfile": "gold"})


@pytest.mark.parametrize(
    ("text", "version"), [("1.29", (1, 29)), ("v1.30.2", (1, 30)), ("1.31+", (1, 31))]
)
def test_versions(text: str, version: tuple[int, int]) -> None:
    assert parse_version(text) == version


def test_registries() -> None:
    assert image_registry("nginx") == "docker.io"
    assert image_registry("ghcr.io/a/b:1") == "ghcr.io"
    assert image_registry("localhost:5000/a") == "localhost:5000"
    assert image_allowed("ghcr.io/team/sidecar:1", ("ghcr.io/team",))
    assert not image_allowed("ghcr.io/teamb/sidecar:1", ("ghcr.io/team",))
    assert image_allowed("library/nginx", ("docker.io",))


def test_the_default_image_names_its_registry() -> None:
    """A bare name means docker.io: the default profile would then allow every
    image there as a per-pod override."""
    profile = Profile()
    first = profile.image.split("/", 1)[0]
    assert "." in first, profile.image
    assert profile.registries() == (first,)
    assert not image_allowed("docker.io/library/busybox:1", profile.registries())
    assert not image_allowed("busybox:1", profile.registries())
