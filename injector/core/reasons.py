"""Why ``explain`` says what it says: for an injected pod, where the profile, the
mode (native or classic sidecars), each role (on or off) and each effective
value come from: an annotation of the pod, the profile, the pod itself, or a
default (the agent's own when nothing is set).

Pure: it reads the parsed request (``PodRequest``, never the raw annotations),
the profile and the ``Plan`` that ``render`` made, and names every value by
its contract row; it decides nothing (``injector.core.plan`` does).
"""

from __future__ import annotations

from typing import Any

from contract import config, pod, proxy, secrets
from contract.catalogue import ROLES
from contract.catalogue import role as contract_role
from contract.knobs import Knob, Role
from contract.layout import PREFIX
from injector.core.model import NamespaceInfo, PodRequest
from injector.core.plan import Plan, RoleSpec
from injector.core.settings import NATIVE_SIDECARS_SINCE, Settings

DERIVED = {
    proxy.INBOUND_PORT: "the first containerPort of the app",
    secrets.FILE_GROUP: "the pod's securityContext.fsGroup",
    secrets.SECRETS: f"the pod's {PREFIX}secret-NAME annotations",
}


def reasons(
    request: PodRequest,
    namespace: NamespaceInfo,
    settings: Settings,
    plan: Plan,
    version_origin: str,
) -> dict[str, Any]:
    return {
        "injected": _injected(request, namespace),
        "profile": _profile(request, plan),
        "mode": _mode(request, plan, settings, version_origin),
        **({"job": _job(plan)} if plan.job_strategy else {}),
        "roles": _roles(request, plan),
        "values": _values(request, plan),
    }


def _injected(request: PodRequest, namespace: NamespaceInfo) -> str:
    if request.inject is not None:
        return f'the pod says {PREFIX}inject: "{pod.INJECT.format(request.inject)}"'
    return f"namespace {namespace.name} is labelled {PREFIX}injection: enabled"


def _profile(request: PodRequest, plan: Plan) -> str:
    name = plan.profile.name
    if request.profile is not None:
        return f"{name}: the pod's {PREFIX}profile annotation"
    return f"{name}: the default profile (the pod names none with {PREFIX}profile)"


def _mode(request: PodRequest, plan: Plan, settings: Settings, origin: str) -> str:
    mode = "native sidecars" if plan.native else "classic sidecars"
    asked = request.values.get(pod.NATIVE_SIDECARS) or "auto"
    profile = plan.profile
    if asked != "auto":
        return f'{mode}: the pod says {PREFIX}native-sidecars: "{asked}"'
    if profile.native_sidecars != "auto":
        return f"{mode}: profile {profile.name} says nativeSidecars: {profile.native_sidecars}"
    since = ".".join(map(str, NATIVE_SIDECARS_SINCE))
    left = f"the pod and profile {profile.name} leave it to the cluster (auto)"
    if settings.cluster_version is None:
        return f"{mode}: {left}, and its version is unknown (native sidecars need {since})"
    version = ".".join(map(str, settings.cluster_version))
    has = "has them" if settings.native_sidecars_supported else f"is older than {since}"
    return f"{mode}: {left}, and Kubernetes {version} {has} ({version}: {origin})"


def _job(plan: Plan) -> str:
    how = plan.job_strategy or ""
    return f"the pod belongs to a Job (its ownerReferences), so it must complete: {how}"


def _roles(request: PodRequest, plan: Plan) -> dict[str, str]:
    on = {r.role for r in plan.roles}
    return {r.name: ("on: " if r.name in on else "off: ") + _why(request, r) for r in ROLES}


def _why(request: PodRequest, role: Role) -> str:
    """Why ``role`` is on or off, by the rule of ``contract.knobs.Role``."""
    switch, trigger = role.switch, role.trigger
    if switch is not None and switch in request.values:
        return f'{PREFIX}{switch.annotation}: "{switch.format(request.values.require(switch))}"'
    if trigger is secrets.SECRET:  # a family: secret-NAME
        names = ", ".join(sorted(s.name for s in request.secrets))
        if names:
            return f"{PREFIX}{trigger.annotation} for {names}"
        return f"no {PREFIX}{trigger.annotation} annotation"
    if trigger is not None:
        value = request.values.get(trigger)
        if value is not None:
            return f"{PREFIX}{trigger.annotation}: {trigger.format(value)}"
        return f"no {PREFIX}{trigger.annotation} annotation"
    tuned = [k.annotation for k in role.annotated if k in request.values and k is not switch]
    if tuned:
        return f"{', '.join(PREFIX + str(k) for k in tuned)} set"
    others = [r for r in request.roles if r != role.name]
    if others:
        return f"{' and '.join(others)} asked for and no {role.name}-* annotation is set"
    return f"no other role is asked for: the {role.name} is the default role"


def _values(request: PodRequest, plan: Plan) -> dict[str, str]:
    values: dict[str, str] = {}
    for spec in (*plan.roles, *((plan.capture,) if plan.capture else ())):
        if spec is not plan.capture:
            values |= _resources(request, plan, spec)
        for knob in contract_role(spec.role).knobs:
            if knob.env:
                found = _source(request, plan, spec, knob)
                if found is not None:
                    values[f"{spec.role}.{_short(knob.env)}"] = found
    return values | _modes(request, plan)


def _resources(request: PodRequest, plan: Plan, spec: RoleSpec) -> dict[str, str]:
    role, profile = spec.role, plan.profile
    overrides = request.overrides.get(role)
    limits = spec.resources.to_k8s()["limits"]
    found = {}
    for what, asked, field in (
        ("image", overrides and overrides.image, f"images.{role} or image"),
        ("cpu", overrides and overrides.cpu, f"resources.{role}"),
        ("memory", overrides and overrides.memory, f"resources.{role}"),
    ):
        value = spec.image if what == "image" else limits[what]
        where = f"the pod's {PREFIX}{role}-{what}" if asked else f"profile {profile.name} ({field})"
        found[f"{role}.{what}"] = f"{value}: {where}"
    return found


def _source(request: PodRequest, plan: Plan, spec: RoleSpec, knob: Knob[Any]) -> str | None:
    """Where one variable's value comes from (None: not set, nothing to say)."""
    profile = plan.profile
    value = spec.values.get(knob)
    if value is None:
        if knob.annotation and knob.default is not None:
            return (
                f"{knob.default}: the agent's default (neither {PREFIX}{knob.annotation} "
                f"nor profile {profile.name} sets it)"
            )
        return None
    text = knob.format(value)
    if "-----BEGIN " in text:  # a CA bundle: counted, not printed
        text = f"{text.count('-----BEGIN ')} PEM certificate(s)"
    if knob in request.values:
        return f"{text}: the pod's {PREFIX}{knob.annotation}"
    if knob in DERIVED:
        return f"{text}: {DERIVED[knob]}"
    if knob in profile.values:
        same = value == knob.parsed_default()
        return f"{text}: profile {profile.name} ({knob.profile})" + (
            ", the same as the agent's default" if same else ""
        )
    return f"{text}: the default"


def _modes(request: PodRequest, plan: Plan) -> dict[str, str]:
    """Secrets mode and config path: set by annotation, profile or a Job's needs."""
    values = {}
    name = plan.profile.name
    if plan.role("secrets"):
        mode = {(True, True): "both", (True, False): "init"}.get(
            (plan.secrets_init, plan.secrets_sidecar), "sidecar"
        )
        values["secrets.mode"] = (
            f"{mode}: the pod belongs to a Job and runs classic sidecars, so init only"
            if plan.job_strategy and not plan.native
            else f"{mode}: the pod's {PREFIX}secrets-mode"
            if secrets.MODE in request.values
            else f"{mode}: profile {name} (secretsMode)"
        )
    if plan.role("config"):
        where = (
            f"the pod's {PREFIX}config-path"
            if config.PATH in request.values
            else f"profile {name} (configPath)"
        )
        values["config.path"] = f"{plan.config_path}: {where}"
    return values


def _short(variable: str) -> str:
    """SIDECAR_RETRY_ON -> retry-on (the name the values go by in the annotations)."""
    return variable.removeprefix("SIDECAR_").lower().replace("_", "-")
