"""What injection will do: a ``Plan`` (every effective value, what ``explain``
shows) or a ``Skip`` with its reason; ``injector.core.decision`` makes them.

Each role's ``RoleSpec.values`` are the pod's rows over the profile's, plus
what the pod itself decides (the inbound port, the secrets, the file group);
``contract.knobs.environment`` turns them into the role's ``SIDECAR_*``
variables, so nothing here spells a variable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from contract import layout
from contract.catalogue import role as contract_role
from contract.common import RELOAD
from contract.knobs import Knob, Values, environment
from contract.reload import ReloadTarget
from injector.core import traffic as traffic_plan
from injector.core.settings import Profile, Resources
from injector.core.signalling import Signaller

T = TypeVar("T")
INJECTOR_LABEL = ("app.kubernetes.io/name", "sidecar-injector")

# Skip reasons (stable codes: metrics labels, explain output, status).
SkipReason = Literal[
    "not-requested",
    "inject-false",
    "namespace-disabled",
    "host-network",
    "system-namespace",
    "injector-pod",
]
NOT_REQUESTED: SkipReason = "not-requested"
INJECT_FALSE: SkipReason = "inject-false"
NAMESPACE_DISABLED: SkipReason = "namespace-disabled"
HOST_NETWORK: SkipReason = "host-network"
SYSTEM_NAMESPACE: SkipReason = "system-namespace"
INJECTOR_POD: SkipReason = "injector-pod"
JobStrategy = Literal[
    "native sidecars: they stop when the app exits",
    "init-only",
    "init-only secrets/config; proxy exits on POST /quitquitquit",
    "init-only secrets/config; logs exits on POST /quitquitquit",
    "init-only secrets/config; proxy and logs exit on POST /quitquitquit",
]


@dataclass(frozen=True)
class Skip:
    reason: SkipReason
    message: str


@dataclass(frozen=True)
class RoleSpec:
    """Image, resources and user of one role's containers, and its values."""

    role: str
    image: str
    resources: Resources
    user: int
    group: int
    values: Values  # what the role's agent gets (``env``), and injector-only rows

    @property
    def env(self) -> tuple[tuple[str, str], ...]:
        """The role's ``SIDECAR_*`` variables with plain values (refresher containers)."""
        return tuple(environment(contract_role(self.role), self.values))

    def get(self, knob: Knob[T]) -> T | None:
        return self.values.get(knob)


@dataclass(frozen=True)
class Plan:
    roles: tuple[RoleSpec, ...]
    profile: Profile
    native: bool
    job_strategy: JobStrategy | None
    app_containers: tuple[str, ...]
    secrets_init: bool
    secrets_sidecar: bool
    config_sidecar: bool
    config_path: str
    share_process_namespace: bool
    warnings: tuple[str, ...]
    pull_policy: str
    signaller: Signaller | None = None  # sidecar-signal, for reload: signal:...
    traffic: traffic_plan.Traffic = field(default_factory=traffic_plan.Traffic)
    capture: RoleSpec | None = None  # the capture init container (proxy-capture: iptables)

    def role(self, name: str) -> RoleSpec | None:
        for spec in self.roles:  # a loop: this runs a dozen times a review
            if spec.role == name:
                return spec
        return None

    @property
    def reload(self) -> ReloadTarget | None:
        """What the pod asked for (a signal goes through ``sidecar-signal``)."""
        if self.signaller is not None:
            return self.signaller.target
        found = (r.values.get(RELOAD) for r in self.roles)
        return next((target for target in found if target is not None), None)

    def describe(self) -> dict[str, Any]:
        """Plain data for ``explain``."""
        has_secrets, has_config = self.role("secrets"), self.role("config")
        return {
            "profile": self.profile.name,
            "mode": "native sidecars" if self.native else "classic sidecars",
            "job": self.job_strategy,
            "appContainers": list(self.app_containers),
            "roles": {
                r.role: {
                    "image": r.image,
                    "resources": r.resources.to_k8s(),
                    "runAs": f"{r.user}:{r.group}",
                    "env": dict(r.env),
                }
                for r in self.roles
            },
            "secrets": (
                {"init": self.secrets_init, "sidecar": self.secrets_sidecar}
                if has_secrets
                else None
            ),
            "config": {"path": self.config_path, "sidecar": self.config_sidecar}
            if has_config
            else None,
            "reload": str(self.reload) if self.reload else None,
            "signalledBy": (
                f"{layout.SIGNAL_CONTAINER} as {self.signaller.user}:{self.signaller.group}"
                if self.signaller
                else None
            ),
            "shareProcessNamespace": self.share_process_namespace,
            "traffic": traffic_plan.describe(self.traffic) if self.role("proxy") else None,
        }
