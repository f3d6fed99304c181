"""SidecarProfile objects -> Settings, defaults, last valid generation, status."""

from __future__ import annotations

from typing import Any

from contract import proxy, secrets
from injector.core.profiles import ProfileStore, parse
from injector.core.settings import DEFAULT_IMAGE, Settings


def body(
    name: str,
    spec: Any = None,
    generation: int = 1,
    created: str = "2026-01-01T00:00:00Z",
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "sidecar.example.io/v1alpha1",
        "kind": "SidecarProfile",
        "metadata": {"name": name, "generation": generation, "creationTimestamp": created},
        "spec": spec if spec is not None else {},
    }
    if status is not None:
        obj["status"] = status
    return obj


FULL_SPEC = {
    "default": True,
    "image": "registry.example.com/sidecar:1.2",
    "images": {"proxy": "registry.example.com/proxy:1.2"},
    "resources": {"proxy": {"requests": {"cpu": "50m", "memory": "32Mi"}}},
    "bounds": {"maxCpu": "1", "maxMemory": "512Mi"},
    "allowedRegistries": ["registry.example.com"],
    "vault": {"address": "https://vault.example.com:8200", "authPath": "k8s-prod"},
    "proxy": {"timeout": "5s", "retries": 3, "rateLimit": "100/s"},
    "nativeSidecars": "true",
}


def test_a_full_spec_maps_onto_the_profile_the_webhook_renders_with() -> None:
    store = ProfileStore()
    store.replace_all([body("prod", FULL_SPEC)])
    settings = store.settings
    assert settings.default_profile == "prod"
    profile = settings.profile(None)
    assert profile is not None
    assert profile.name == "prod"
    assert profile.image_for("proxy") == "registry.example.com/proxy:1.2"
    assert profile.image_for("secrets") == "registry.example.com/sidecar:1.2"
    assert profile.resources_for("proxy").cpu_request.text == "50m"
    assert profile.bounds.max_memory.text == "512Mi"
    assert profile.allowed_registries == ("registry.example.com",)
    assert profile.values.get(secrets.VAULT_ADDR) == "https://vault.example.com:8200"
    assert profile.values.get(secrets.AUTH_PATH) == "k8s-prod"
    assert profile.values.get(proxy.TIMEOUT) == 5.0
    assert profile.values.get(proxy.RETRIES) == 3
    assert profile.native_sidecars == "true"
    # The base settings' built-in profile is still there for pods that name it.
    assert settings.profile("default") is not None
    assert settings.profile("default").image == DEFAULT_IMAGE  # type: ignore[union-attr]
    status = store.status_for("prod")
    assert status["valid"] is True
    assert status["default"] is True
    assert status["inUse"] is True
    assert status["message"] == "valid; the default profile"


def test_invalid_specs_name_the_field_and_what_is_accepted() -> None:
    cases = {
        "bad-default": ({"default": "yes"}, "profile bad-default.default: 'yes' is not true"),
        "bad-key": ({"imagez": "x"}, "unknown field imagez"),
        "bad-vault": ({"vault": {"address": "vault:8200"}}, "is not an http:// or https:// URL"),
        "bad-cpu": ({"resources": {"proxy": {"limits": {"cpu": "lots"}}}}, "limits.cpu"),
        "bad-native": ({"nativeSidecars": "maybe"}, "is not one of auto, true, false"),
        "bad-retries": ({"proxy": {"retries": 99}}, "proxy.retries"),
        "not-a-map": (["x"], "spec must be a mapping"),
    }
    for name, (spec, expected) in cases.items():
        profile, _, error = parse(body(name, spec))
        assert profile is None, name
        assert error is not None
        assert expected in error, (name, error)


def test_an_invalid_profile_is_not_served_and_its_status_says_why() -> None:
    store = ProfileStore()
    store.replace_all([body("broken", {"nativeSidecars": "maybe"})])
    assert store.settings.profile("broken") is None
    status = store.status_for("broken")
    assert status["valid"] is False
    assert status["inUse"] is False
    assert "nativeSidecars" in status["message"]
    assert "not served: pods naming this profile are denied" in status["message"]


def test_a_bad_update_keeps_the_last_valid_generation_in_service() -> None:
    store = ProfileStore()
    store.replace_all([body("team", {"image": "r.example.com/a:1"}, generation=1)])
    changed = store.apply(body("team", {"image": "r.example.com/a:1", "bogus": 1}, generation=2))
    assert changed is False
    profile = store.settings.profile("team")
    assert profile is not None
    assert profile.image == "r.example.com/a:1"
    status = store.status_for("team")
    assert status["valid"] is False
    assert status["inUse"] is True
    assert status["observedGeneration"] == 2
    assert status["servedGeneration"] == 1
    assert "still serving generation 1" in status["message"]
    # Fixing it serves the new generation.
    assert store.apply(body("team", {"image": "r.example.com/a:3"}, generation=3)) is True
    assert store.settings.profile("team").image == "r.example.com/a:3"  # type: ignore[union-attr]
    assert store.status_for("team")["servedGeneration"] == 3


def test_the_oldest_default_wins_and_the_others_are_told() -> None:
    store = ProfileStore()
    store.replace_all(
        [
            body("newer", {"default": True}, created="2026-02-01T00:00:00Z"),
            body("older", {"default": True}, created="2026-01-01T00:00:00Z"),
        ]
    )
    assert store.settings.default_profile == "older"
    assert store.status_for("older")["default"] is True
    newer = store.status_for("newer")
    assert newer["default"] is False
    assert newer["valid"] is True
    assert "default: true ignored, profile older is the default" in newer["message"]
    # Deleting the winner makes the other one the default.
    assert store.remove("older") is True
    assert store.settings.default_profile == "newer"
    assert store.status_for("newer")["default"] is True


def test_without_a_default_profile_the_base_settings_default_applies() -> None:
    base = Settings()
    store = ProfileStore(base)
    store.replace_all([body("team", {"image": "r.example.com/a:1"})])
    assert store.settings.default_profile == base.default_profile
    assert store.status_for("team")["default"] is False
    assert "sidecar.example.io/profile: team" in store.status_for("team")["message"]


def test_a_profile_named_like_a_base_profile_replaces_it() -> None:
    store = ProfileStore()
    store.replace_all([body("default", {"image": "r.example.com/mine:1"})])
    assert store.settings.profile(None).image == "r.example.com/mine:1"  # type: ignore[union-attr]
    assert store.status_for("default")["default"] is True


def test_a_relisting_forgets_deleted_profiles_and_marks_the_store_loaded() -> None:
    store = ProfileStore()
    before = store.loaded
    store.replace_all([body("a"), body("b")])
    assert (before, store.loaded) == (False, True)
    store.replace_all([body("b")])
    assert store.settings.profile("a") is None
    assert store.settings.profile("b") is not None


def test_stale_statuses_lists_only_objects_whose_status_differs() -> None:
    store = ProfileStore()
    store.replace_all([body("a"), body("b")])
    stale = store.stale_statuses()
    assert set(stale) == {"a", "b"}
    store.mark_status("a", stale["a"])
    assert set(store.stale_statuses()) == {"b"}
    # An object that arrives with the right status is not stale.
    store.apply(body("b", status=stale["b"]))
    assert store.stale_statuses() == {}
    # A change elsewhere (b becomes the default) makes b's status stale again.
    store.apply(body("b", {"default": True}, generation=2, status=stale["b"]))
    assert set(store.stale_statuses()) == {"b"}
