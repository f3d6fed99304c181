"""Why ``explain`` says what it says: for an injected pod, where the profile, the
mode (native or classic sidecars), each role (on or off) and each effective
value come from: an annotation of the pod, the profile, the pod itself, or a
default (the agent's own when nothing is set).

Pure: it reads the pod's annotations, the profile and the ``Plan`` that
``render`` made; it decides nothing (``injector.core.plan`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from injector.core.annotations import ANNOTATIONS, PREFIX
from injector.core.model import NamespaceInfo
from injector.core.plan import Plan
from injector.core.settings import NATIVE_SIDECARS_SINCE, Profile, Settings

DEFAULTS = {a.key: a.default for a in ANNOTATIONS}
# SIDECAR_* variable -> (annotation key, the profile field that gives its default).
SOURCES: Mapping[str, tuple[str | None, str | None]] = {
    "SIDECAR_UPSTREAM": ("proxy-upstream", None),
    "SIDECAR_INBOUND_PORT": ("proxy-inbound-port", None),
    "SIDECAR_TIMEOUT": ("proxy-timeout", "proxy.timeout"),
    "SIDECAR_RETRIES": ("proxy-retries", "proxy.retries"),
    "SIDECAR_RETRY_ON": ("proxy-retry-on", "proxy.retryOn"),
    "SIDECAR_RATE_LIMIT": ("proxy-rate-limit", "proxy.rateLimit"),
    "SIDECAR_MAX_CONNECTIONS": ("proxy-max-connections", "proxy.maxConnections"),
    "SIDECAR_OUTLIER_5XX": ("proxy-outlier-5xx", "proxy.outlier5xx"),
    "SIDECAR_DRAIN_TIMEOUT": (None, "proxy.drainTimeout"),
    "SIDECAR_VAULT_ADDR": ("secrets-vault-addr", "vault.address"),
    "SIDECAR_VAULT_ROLE": ("secrets-role", "vault.role"),
    "SIDECAR_VAULT_AUTH_PATH": ("secrets-auth-path", "vault.authPath"),
    "SIDECAR_VAULT_NAMESPACE": (None, "vault.namespace"),
    "SIDECAR_SECRETS": ("secret-NAME", None),
    "SIDECAR_CONFIG_SOURCE": ("config-source", None),
    "SIDECAR_CONFIG_INTERVAL": ("config-interval", "configInterval"),
}
# What an unset variable means, for the annotations a role reads.
UNSET = {
    "proxy": ("proxy-timeout", "proxy-retries", "proxy-retry-on", "proxy-max-connections"),
    "config": ("config-interval",),
}
ENV_OF = {annotation: env for env, (annotation, _) in SOURCES.items() if annotation}


def reasons(
    pod: Mapping[str, Any],
    namespace: NamespaceInfo,
    settings: Settings,
    plan: Plan,
    version_origin: str,
) -> dict[str, Any]:
    ours = _ours(pod)
    return {
        "injected": _injected(ours, namespace),
        "profile": _profile(ours, plan.profile, settings),
        "mode": _mode(ours, plan, settings, version_origin),
        **({"job": _job(plan)} if plan.job else {}),
        "roles": _roles(ours, plan),
        "values": _values(ours, plan, pod),
    }


def _ours(pod: Mapping[str, Any]) -> dict[str, str]:
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping):
        return {}
    return {k[len(PREFIX) :]: str(v) for k, v in annotations.items() if k.startswith(PREFIX)}


def _injected(ours: Mapping[str, str], namespace: NamespaceInfo) -> str:
    if "inject" in ours:
        return f'the pod says {PREFIX}inject: "{ours["inject"]}"'
    return f"namespace {namespace.name} is labelled {PREFIX}injection: enabled"


def _profile(ours: Mapping[str, str], profile: Profile, settings: Settings) -> str:
    if "profile" in ours:
        return f"{profile.name}: the pod's {PREFIX}profile annotation"
    return f"{profile.name}: the default profile (the pod names none with {PREFIX}profile)"


def _mode(ours: Mapping[str, str], plan: Plan, settings: Settings, origin: str) -> str:
    mode = "native sidecars" if plan.native else "classic sidecars"
    asked = ours.get("native-sidecars", "auto").lower()
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


def _roles(ours: Mapping[str, str], plan: Plan) -> dict[str, str]:
    secrets = sorted(k[len("secret-") :] for k in ours if _is_secret(k))
    tuned = sorted(k for k in ours if k.startswith("proxy-") and k in ENV_OF)
    other = bool(secrets) or "config-source" in ours
    on = {r.role for r in plan.roles}
    why = {
        "proxy": (
            f'{PREFIX}proxy: "{ours["proxy"]}"'
            if "proxy" in ours
            else f"{', '.join(PREFIX + k for k in tuned)} set"
            if tuned
            else "secrets or config is asked for and no proxy-* annotation is set"
            if other
            else "no other role is asked for: the proxy is the default role"
        ),
        "secrets": (
            f"{PREFIX}secret-NAME for {', '.join(secrets)}"
            if secrets
            else f"no {PREFIX}secret-NAME annotation"
        ),
        "config": (
            f"{PREFIX}config-source: {ours['config-source']}"
            if "config-source" in ours
            else f"no {PREFIX}config-source annotation"
        ),
    }
    return {role: ("on: " if role in on else "off: ") + text for role, text in why.items()}


def _values(ours: Mapping[str, str], plan: Plan, pod: Mapping[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for spec in plan.roles:
        role, env = spec.role, dict(spec.env)
        values[f"{role}.image"] = _source(
            spec.image, ours, f"{role}-image", plan.profile, f"images.{role} or image"
        )
        limits = spec.resources.to_k8s()["limits"]
        for what in ("cpu", "memory"):
            values[f"{role}.{what}"] = _source(
                limits[what], ours, f"{role}-{what}", plan.profile, f"resources.{role}"
            )
        for name, value in env.items():
            annotation, field = SOURCES.get(name, (None, None))
            key = f"{role}.{_short(name)}"
            if name == "SIDECAR_INBOUND_PORT" and "proxy-inbound-port" not in ours:
                values[key] = f"{value}: the first containerPort of the app"
            elif name == "SIDECAR_FILE_GROUP":
                values[key] = f"{value}: the pod's securityContext.fsGroup"
            else:
                values[key] = _source(value, ours, annotation, plan.profile, field)
        for annotation in UNSET.get(role, ()):
            if ENV_OF[annotation] not in env:
                values[f"{role}.{_short(ENV_OF[annotation])}"] = (
                    f"{DEFAULTS[annotation]}: the agent's default (neither {PREFIX}{annotation} "
                    f"nor profile {plan.profile.name} sets it)"
                )
    return values | _modes(ours, plan)


def _modes(ours: Mapping[str, str], plan: Plan) -> dict[str, str]:
    """Secrets mode and config path: set by annotation, profile or a Job's needs."""
    values = {}
    if plan.role("secrets"):
        mode = {(True, True): "both", (True, False): "init"}.get(
            (plan.secrets_init, plan.secrets_sidecar), "sidecar"
        )
        values["secrets.mode"] = (
            f"{mode}: the pod belongs to a Job and runs classic sidecars, so init only"
            if plan.job and not plan.native
            else f"{mode}: the pod's {PREFIX}secrets-mode"
            if "secrets-mode" in ours
            else f"{mode}: profile {plan.profile.name} (secretsMode)"
        )
    if plan.role("config"):
        values["config.path"] = _source(
            plan.config_path, ours, "config-path", plan.profile, "configPath"
        )
    return values


def _source(
    value: Any, ours: Mapping[str, str], annotation: str | None, profile: Profile, field: str | None
) -> str:
    if annotation == "secret-NAME":
        return f"{value}: the pod's {PREFIX}secret-NAME annotations"
    if annotation and annotation in ours:
        return f"{value}: the pod's {PREFIX}{annotation}"
    if not field:
        return f"{value}: the default"
    same = str(_field(profile, field)) == str(_field(Profile(), field))
    return f"{value}: profile {profile.name} ({field})" + (
        ", the same as the built-in default" if same else ""
    )


def _field(profile: Profile, field: str | None) -> Any:
    getters: Mapping[str, Callable[[Profile], Any]] = {
        "proxy.timeout": lambda p: p.proxy.timeout,
        "proxy.retries": lambda p: p.proxy.retries,
        "proxy.retryOn": lambda p: p.proxy.retry_on,
        "proxy.rateLimit": lambda p: p.proxy.rate_limit,
        "proxy.maxConnections": lambda p: p.proxy.max_connections,
        "proxy.outlier5xx": lambda p: p.proxy.outlier_5xx,
        "proxy.drainTimeout": lambda p: p.proxy.drain_timeout,
        "vault.address": lambda p: p.vault.address,
        "vault.role": lambda p: p.vault.role,
        "vault.authPath": lambda p: p.vault.auth_path,
        "vault.namespace": lambda p: p.vault.namespace,
        "configInterval": lambda p: p.config_interval,
        "configPath": lambda p: p.config_path,
    }
    if field is None:
        return None
    if field in getters:
        return getters[field](profile)
    if field.startswith("images."):
        return profile.image_for(field.split(".")[1].split()[0])
    if field.startswith("resources."):
        return profile.resources_for(field.split(".")[1]).to_k8s()
    return None


def _short(variable: str) -> str:
    """SIDECAR_RETRY_ON -> retry-on (the name the values go by in the annotations)."""
    return variable.removeprefix("SIDECAR_").lower().replace("_", "-")


def _is_secret(key: str) -> bool:
    return key.startswith("secret-") and not key.startswith("secret-template-")
