"""The ``status`` annotation: what an injection added, parsed once into a
typed record.

``render`` writes it on every injected pod and reads it back (``Status.of``)
when a pod comes again (re-invocation, a copied manifest): what it lists is
stripped before injecting anew, so injecting twice changes nothing. It may
list only names the injector itself adds, so a forged or copied status can
never make re-injection strip the user's own containers or volumes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import msgspec

from contract import layout
from contract.layout import STATUS
from injector.core.traffic import EGRESS_VARIABLES
from injector.errors import InjectionDenied

Mode = Literal["native", "classic"]
OUR_CONTAINERS = frozenset(
    {
        layout.PROXY_CONTAINER,
        layout.SECRETS_INIT_CONTAINER,
        layout.SECRETS_CONTAINER,
        layout.CONFIG_INIT_CONTAINER,
        layout.CONFIG_CONTAINER,
        layout.SIGNAL_CONTAINER,
        layout.CAPTURE_INIT_CONTAINER,
        layout.LOGS_CONTAINER,
    }
)
OUR_VOLUMES = frozenset(
    {
        layout.PROXY_VOLUME,
        layout.SECRETS_VOLUME,
        layout.STATE_VOLUME,
        layout.TOKEN_VOLUME,
        layout.CONFIG_VOLUME,
        layout.LOGS_VOLUME,
        layout.LOGS_STATE_VOLUME,
        layout.LOGS_AUTH_VOLUME,
        layout.IDENTITY_TOKEN_VOLUME,
        layout.MESH_TRUST_VOLUME,
        layout.POD_CREDENTIALS_VOLUME,
    }
)
_LISTS = ("initContainers", "containers", "volumes")


@dataclass(frozen=True)
class MeshStatus:
    """The pod's mesh identity as injected: the operator signs only for pods that
    have it (its trust domain names the identity), and lists them by the label."""

    trust_domain: str
    mode: str
    issuance: str

    def to_data(self) -> dict[str, str]:
        return {"trustDomain": self.trust_domain, "mode": self.mode, "issuance": self.issuance}

    @classmethod
    def parse(cls, data: object) -> MeshStatus | None:
        if not isinstance(data, dict):
            return None
        values = [data.get(k) for k in ("trustDomain", "mode", "issuance")]
        if not all(isinstance(v, str) for v in values):
            return None
        return cls(*(str(v) for v in values))


@dataclass(frozen=True)
class Status:
    """What one injection added, as the ``status`` annotation records it."""

    version: str = ""
    profile: str = ""
    roles: tuple[str, ...] = ()
    mode: Mode = "native"
    job: str | None = None
    init_containers: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    share_process_namespace: bool = False
    default_container: bool = False
    env: tuple[str, ...] = ()  # variables added to the app containers (egress)
    mesh: MeshStatus | None = None  # with it, the pod carries the sidecar.example.io/mtls label

    @property
    def added(self) -> frozenset[str]:
        """Names of the containers (init or not) the injection added."""
        return frozenset(self.init_containers) | frozenset(self.containers)

    @classmethod
    def of(cls, annotations: Mapping[str, str]) -> Status | None:
        """The pod's status, None when it has none; ``InjectionDenied`` when it
        is not what the injector writes or lists names it never adds."""
        text = annotations.get(STATUS)
        return None if text is None else cls.parse(text)

    @classmethod
    def parse(cls, text: object) -> Status:
        try:
            data = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), list) and all(isinstance(n, str) for n in data[k])
            for k in _LISTS
        ):
            raise InjectionDenied(
                f"annotation {STATUS} is not what the injector writes (JSON with containers, "
                "initContainers and volumes); remove it, the injector sets it"
            )
        roles, env = data.get("roles"), data.get("env", [])
        if not isinstance(env, list) or not all(isinstance(n, str) for n in env):
            env = ["(env not a list of names)"]
        status = cls(
            version=str(data.get("version", "")),
            profile=str(data.get("profile", "")),
            roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
            mode="classic" if data.get("mode") == "classic" else "native",
            job=data["job"] if isinstance(data.get("job"), str) else None,
            init_containers=tuple(data["initContainers"]),
            containers=tuple(data["containers"]),
            volumes=tuple(data["volumes"]),
            share_process_namespace=data.get("shareProcessNamespace") is True,
            default_container=data.get("defaultContainer") is True,
            env=tuple(env),
            mesh=MeshStatus.parse(data.get("mesh")),
        )
        foreign = sorted(
            (status.added - OUR_CONTAINERS)
            | (set(status.volumes) - OUR_VOLUMES)
            | (set(status.env) - EGRESS_VARIABLES)
        )
        if foreign:
            raise InjectionDenied(
                f"annotation {STATUS} lists {', '.join(foreign)}, which the injector never adds "
                f"(it adds containers {', '.join(sorted(OUR_CONTAINERS))} and volumes "
                f"{', '.join(sorted(OUR_VOLUMES))}); remove the annotation, the injector sets it"
            )
        return status

    def to_json(self) -> str:
        data: dict[str, object] = {
            "version": self.version,
            "profile": self.profile,
            "roles": list(self.roles),
            "mode": self.mode,
        }
        if self.job:
            data["job"] = self.job
        data["initContainers"] = list(self.init_containers)
        data["containers"] = list(self.containers)
        data["volumes"] = list(self.volumes)
        if self.env:
            data["env"] = list(self.env)
        if self.share_process_namespace:
            data["shareProcessNamespace"] = True
        if self.mesh is not None:
            data["mesh"] = self.mesh.to_data()
        if self.default_container:
            data["defaultContainer"] = True
        encoded = _ENCODER.encode(data)
        # Printable ASCII (our names always are): the same text json.dumps writes.
        if _PRINTABLE.fullmatch(encoded):
            return encoded.decode("ascii")
        return json.dumps(data, separators=(",", ":"))


_ENCODER = msgspec.json.Encoder()
_PRINTABLE = re.compile(rb"[ -~]*")
