"""SidecarProfile custom resources -> the ``Settings`` the webhook renders with.

Pure: the operator feeds watched objects in (``apply``/``remove``) and reads
back an immutable ``Settings`` snapshot and the status each object should
show. No I/O here.

Rules:
- ``spec`` minus ``default`` is a ``Profile`` spec (``specs.profile_from_spec``).
- ``spec.default: true`` makes a profile the one pods get without the
  ``sidecar.example.io/profile`` annotation. If several say so, the oldest
  (then the first by name) wins and the others' status says which one did.
  With none, the base settings' default applies (``--config``, else built-in).
- An update that makes a served profile invalid keeps the last valid
  generation in service (status: ``valid: false``, ``inUse: true``, the
  message says which generation is served). A profile that was never valid is
  not served: pods naming it are denied as for an unknown profile.
- A profile named like one of the base settings' replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from injector.core.settings import Profile, Settings
from injector.core.specs import profile_from_spec
from injector.errors import ConfigError

GROUP = "sidecar.example.io"
VERSION = "v1alpha1"
PLURAL = "sidecarprofiles"
KIND = "SidecarProfile"
DEFAULT_FIELD = "default"


@dataclass(frozen=True)
class ProfileObject:
    """What the store keeps of one SidecarProfile object."""

    name: str
    generation: int
    created: str  # metadata.creationTimestamp (RFC 3339 sorts as text)
    wants_default: bool
    profile: Profile | None  # None: this generation is invalid
    error: str | None
    served: Profile | None  # what admissions use: this generation, or the last valid one
    served_generation: int | None
    status: Mapping[str, Any]  # the object's current .status, as last seen


def parse(body: Mapping[str, Any]) -> tuple[Profile | None, bool, str | None]:
    """A SidecarProfile object -> (profile or None, default flag, error message or None)."""
    metadata = body.get("metadata") or {}
    name = str(metadata.get("name", ""))
    spec = body.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        return None, False, f"profile {name}: spec must be a mapping"
    flag = spec.get(DEFAULT_FIELD, False)
    wants_default = flag is True
    if not isinstance(flag, bool):
        return None, False, f"profile {name}.default: {flag!r} is not true or false"
    rest = {key: value for key, value in spec.items() if key != DEFAULT_FIELD}
    try:
        return profile_from_spec(name, rest), wants_default, None
    except ConfigError as exc:
        return None, wants_default, str(exc)


class ProfileStore:
    """The profiles the injector serves, rebuilt into a ``Settings`` on each change."""

    def __init__(self, base: Settings | None = None) -> None:
        self.base = base if base is not None else Settings()
        self.objects: dict[str, ProfileObject] = {}
        self.loaded = False  # the initial listing is in
        self._settings = self._build()

    @property
    def settings(self) -> Settings:
        """The current snapshot (immutable; read it once per admission)."""
        return self._settings

    def set_base(self, base: Settings) -> None:
        """New base settings (``--config``, discovered cluster version)."""
        self.base = base
        self._settings = self._build()

    def replace_all(self, bodies: list[Mapping[str, Any]]) -> None:
        """The result of a full listing: what is not listed is gone."""
        listed = {str((b.get("metadata") or {}).get("name", "")) for b in bodies}
        for name in list(self.objects):
            if name not in listed:
                del self.objects[name]
        for body in bodies:
            self._apply(body)
        self.loaded = True
        self._settings = self._build()

    def apply(self, body: Mapping[str, Any]) -> bool:
        """An added or modified object; True when what admissions use changed."""
        before = self._settings
        self._apply(body)
        self._settings = self._build()
        return self._settings != before

    def remove(self, name: str) -> bool:
        before = self._settings
        self.objects.pop(name, None)
        self._settings = self._build()
        return self._settings != before

    def _apply(self, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        name = str(metadata.get("name", ""))
        generation = int(metadata.get("generation") or 0)
        previous = self.objects.get(name)
        profile, wants_default, error = parse(body)
        served, served_generation = profile, generation if profile else None
        if profile is None and previous is not None and previous.served is not None:
            served, served_generation = previous.served, previous.served_generation
        status = body.get("status")
        self.objects[name] = ProfileObject(
            name=name,
            generation=generation,
            created=str(metadata.get("creationTimestamp") or ""),
            wants_default=wants_default,
            profile=profile,
            error=error,
            served=served,
            served_generation=served_generation,
            status=MappingProxyType(dict(status)) if isinstance(status, Mapping) else {},
        )

    def default_name(self) -> str:
        """The profile pods get without the annotation."""
        candidates = sorted(
            (o for o in self.objects.values() if o.wants_default and o.served is not None),
            key=lambda o: (o.created, o.name),
        )
        return candidates[0].name if candidates else self.base.default_profile

    def _build(self) -> Settings:
        profiles = dict(self.base.profiles)
        for obj in self.objects.values():
            if obj.served is not None:
                profiles[obj.name] = obj.served
        return self.base.replace(
            profiles=MappingProxyType(profiles), default_profile=self.default_name()
        )

    def status_for(self, name: str) -> dict[str, Any]:
        """The ``.status`` object ``name`` should show."""
        obj = self.objects[name]
        default = self._settings.default_profile == name
        served = obj.served is not None
        status: dict[str, Any] = {
            "valid": obj.profile is not None,
            "default": default,
            "inUse": served,
            "observedGeneration": obj.generation,
            "servedGeneration": obj.served_generation,  # None: removed by a merge patch
        }
        if obj.error is not None:
            if served:
                message = f"{obj.error}; still serving generation {obj.served_generation}"
            else:
                message = f"{obj.error}; not served: pods naming this profile are denied"
        elif default:
            message = "valid; the default profile"
        else:
            message = "valid; used by pods annotated sidecar.example.io/profile: " + name
        if obj.wants_default and not default and served:
            message += f"; default: true ignored, profile {self.default_name()} is the default"
        status["message"] = message
        return status

    def stale_statuses(self) -> dict[str, dict[str, Any]]:
        """Objects whose ``.status`` differs from what it should be, with the new status."""
        stale = {}
        for name, obj in self.objects.items():
            wanted = self.status_for(name)
            if any(obj.status.get(key) != value for key, value in wanted.items()):
                stale[name] = wanted
        return stale

    def mark_status(self, name: str, status: Mapping[str, Any]) -> None:
        """Record that ``name``'s status was written (the watch will confirm it)."""
        obj = self.objects.get(name)
        if obj is not None:
            merged = {**obj.status, **status}
            self.objects[name] = replace(obj, status=MappingProxyType(merged))
