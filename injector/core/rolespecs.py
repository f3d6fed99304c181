"""Each role's ``RoleSpec``: its values (the pod's rows over the profile's,
plus what the pod decides), image, resources within the profile's bounds, and
the user its containers run as. Pure; raises ``InjectionDenied``.
"""

from __future__ import annotations

from contract import layout, proxy, secrets
from contract.catalogue import ROLES
from contract.catalogue import role as contract_role
from contract.knobs import Values
from contract.values import Quantity
from injector.core.mesh import mesh_values
from injector.core.model import PodRequest
from injector.core.plan import (
    RoleSpec,
)
from injector.core.settings import Profile, Resources, Settings, image_allowed
from injector.core.views import Container, PodSecurityContext
from injector.errors import InjectionDenied

# Ports of the proxy itself and of every agent: never the app's inbound port.
OURS = frozenset(
    (layout.ADMIN_PORT, layout.OUTBOUND_PORT, layout.INBOUND_PORT, *(r.agent_port for r in ROLES))
)


def role_values(role: str, request: PodRequest, profile: Profile) -> Values:
    """The role's rows: the pod's over the profile's (kept with the request, for
    the next review of the same annotations; the entry holds the profile, so a
    profile replaced since is never mistaken for it)."""
    key = (role, id(profile))
    found = request.derived.get(key)
    if found is not None and found[0] is profile:
        return found[1]
    knobs = contract_role(role).knobs
    values = request.values.only(knobs).over(profile.values.only(knobs))
    if len(request.derived) >= 32:  # profiles come and go: never more than a few
        request.derived.clear()
    request.derived[key] = (profile, values)
    return values


def plan_proxy(
    request: PodRequest,
    profile: Profile,
    app: list[Container],
    settings: Settings,
    warnings: list[str],
) -> RoleSpec:
    values = role_values("proxy", request, profile)
    upstream, inbound = values.get(proxy.UPSTREAM), values.get(proxy.INBOUND_PORT)
    modes = values.get(proxy.CAPTURE) == "iptables" or values.get(proxy.EGRESS) == "http-proxy"
    if upstream is None and inbound is None and not modes:
        inbound = _first_port(app)
        if inbound is None:
            raise InjectionDenied(
                f"the proxy has nothing to do: set {layout.PREFIX}proxy-upstream (outbound), "
                f"{layout.PREFIX}proxy-inbound-port (inbound) or give the app container a "
                f'containerPort; or set {layout.PREFIX}proxy: "false"'
            )
        warnings.append(
            f"proxy inbound port not set: using the app's first containerPort {inbound} "
            f"(set {layout.PREFIX}proxy-inbound-port to choose)"
        )
    if inbound in OURS:
        raise InjectionDenied(
            f"annotation {layout.PREFIX}proxy-inbound-port: {inbound} is a port of the "
            "proxy itself; give the app's own port"
        )
    values = values.with_values({proxy.INBOUND_PORT: inbound})
    values = mesh_values(request, values, settings, warnings)
    uid = layout.AGENT_UID
    return plan_role("proxy", request, profile, uid, uid, values)


def plan_secrets(
    request: PodRequest, profile: Profile, security: PodSecurityContext, user: int, group: int
) -> RoleSpec:
    values = role_values("secrets", request, profile)
    if values.get(secrets.VAULT_ADDR) is None:
        raise InjectionDenied(
            f"secrets need a Vault address: set {layout.PREFIX}secrets-vault-addr or the "
            f"profile {profile.name}'s vault.address"
        )
    if values.get(secrets.ROLE_NAME) is None:
        raise InjectionDenied(
            f"secrets need a Vault kubernetes auth role: set {layout.PREFIX}secrets-role or "
            f"the profile {profile.name}'s vault.role"
        )
    fs_group = security.get("fsGroup")
    group_id = fs_group if isinstance(fs_group, int) and not isinstance(fs_group, bool) else None
    values = values.with_values({secrets.SECRETS: request.secrets, secrets.FILE_GROUP: group_id})
    return plan_role("secrets", request, profile, user, group, values)


def plan_role(
    role: str, request: PodRequest, profile: Profile, user: int, group: int, values: Values
) -> RoleSpec:
    overrides = request.overrides.get(role)
    image = profile.image_for(role)
    resources = profile.resources_for(role)
    if overrides is not None:
        if overrides.image:
            allowed = profile.registries()
            if not image_allowed(overrides.image, allowed):
                raise InjectionDenied(
                    f"annotation {layout.PREFIX}{role}-image: {overrides.image!r} is not "
                    f"from an allowed registry ({', '.join(allowed)}); ask the operator to allow "
                    f"it in profile {profile.name}"
                )
            image = overrides.image
        resources = _bounded(role, resources, overrides.cpu, overrides.memory, profile)
    return RoleSpec(role, image, resources, user, group, values)


def _bounded(
    role: str,
    base: Resources,
    cpu: Quantity | None,
    memory: Quantity | None,
    profile: Profile,
) -> Resources:
    b = profile.bounds
    checks = (("cpu", cpu, b.min_cpu, b.max_cpu), ("memory", memory, b.min_memory, b.max_memory))
    for what, value, low, high in checks:
        if value is not None and not low.amount <= value.amount <= high.amount:
            raise InjectionDenied(
                f"annotation {layout.PREFIX}{role}-{what}: {value.text!r} is outside the "
                f"bounds of profile {profile.name}: from {low} to {high}"
            )
    cpu_request, memory_request = base.cpu_request, base.memory_request
    if cpu is not None and cpu.amount < cpu_request.amount:
        cpu_request = cpu
    if memory is not None and memory.amount < memory_request.amount:
        memory_request = memory
    return Resources(
        cpu_request=cpu_request,
        cpu_limit=cpu or base.cpu_limit,
        memory_request=memory_request,
        memory_limit=memory or base.memory_limit,
    )


def _first_port(app: list[Container]) -> int | None:
    for container in app:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if isinstance(number, int) and port.get("protocol", "TCP") == "TCP":
                return number
    return None
