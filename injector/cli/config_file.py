"""``--config FILE`` -> ``Settings``: two accepted shapes, told apart by ``kind``.

1. SidecarProfile manifests, exactly as applied to a cluster (one or more YAML
   documents, or a ``kind: List`` of them; e.g.
   ``manifests/base/sidecarprofile-default.yaml``). They go through the same
   ``ProfileStore`` as the operator's watch, so the default profile is chosen
   as in the cluster (``spec.default: true``; several: the oldest, then the
   first by name; none: the built-in ``default``). An invalid one is an error
   here, not a profile left out.
2. The injector's own settings document (one mapping without ``kind``)::

       clusterVersion: "1.30"          # optional: render for this release
       clusterDomain: cluster.local    # optional: the kubelet's --cluster-domain
       injectorNamespace: sidecar-injector
       defaultProfile: default
       profiles:
         default: {PROFILE SPEC}       # the spec of a SidecarProfile, minus `default`
         gold: {PROFILE SPEC}

Anything else is refused with a message naming the document and both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from injector.cli.yamlfile import read_yaml
from injector.core.profiles import GROUP, KIND, VERSION, ProfileStore
from injector.core.settings import Settings, parse_cluster_domain
from injector.core.specs import settings_from_spec
from injector.errors import ConfigError

RESOLV_CONF = Path("/etc/resolv.conf")
API_VERSION = f"{GROUP}/{VERSION}"
SHAPES = (
    f"--config takes SidecarProfile manifests ({API_VERSION}) or one settings document "
    "(clusterVersion, clusterDomain, injectorNamespace, defaultProfile, profiles)"
)


def load(path: Path) -> Settings:
    """Read ``path`` (``-`` is not accepted: the manifests come from stdin)."""
    return from_documents(read_yaml(str(path), f"config file {path}"), str(path))


def from_documents(documents: list[Any], where: str) -> Settings:
    if not documents:
        return Settings()
    if any(not isinstance(d, Mapping) for d in documents):
        raise ConfigError(f"config file {where}: every document must be a mapping; {SHAPES}")
    if len(documents) == 1 and "kind" not in documents[0]:
        return settings_from_spec(documents[0])
    profiles = list(_profiles(documents, where))
    store = ProfileStore()
    store.replace_all(profiles)
    for name, obj in sorted(store.objects.items()):
        if obj.error is not None:
            raise ConfigError(f"config file {where}: SidecarProfile {name}: {obj.error}")
    return store.settings


def _profiles(documents: list[Any], where: str) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    names: set[str] = set()
    pending = list(reversed(documents))
    while pending:
        document = pending.pop()
        kind = document.get("kind") if isinstance(document, Mapping) else None
        if kind == "List" and isinstance(document.get("items"), list):
            pending.extend(reversed(document["items"]))
            continue
        if kind != KIND or document.get("apiVersion") != API_VERSION:
            raise ConfigError(
                f"config file {where}: a document of kind {kind!r}, apiVersion "
                f"{document.get('apiVersion')!r} is not a SidecarProfile; {SHAPES}"
                if isinstance(document, Mapping)
                else f"config file {where}: a List item is not a mapping; {SHAPES}"
            )
        name = (document.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"config file {where}: a SidecarProfile has no metadata.name")
        if name in names:
            raise ConfigError(f"config file {where}: SidecarProfile {name} is defined twice")
        names.add(name)
        found.append(document)
    return found


def resolver_domain(path: Path = RESOLV_CONF) -> str | None:
    """The cluster domain a pod's resolver names: the kubelet writes the search
    list ``NS.svc.DOMAIN svc.DOMAIN DOMAIN``. None outside a pod, or when the
    file says nothing usable."""
    try:
        lines = path.read_text(errors="replace").splitlines()[:200]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields[:1] != ["search"]:
            continue
        for entry in fields[1:]:
            if entry.startswith("svc."):
                try:
                    return parse_cluster_domain(entry.removeprefix("svc."))
                except ConfigError:
                    return None
    return None
