"""Pod annotations -> a typed, frozen ``PodRequest``.

The only code that reads our pod annotations. Every invalid value is reported
(all of them, in one ``InjectionDenied`` message naming each annotation, its
value and what is accepted); unknown keys under the prefix become warnings with
the nearest known key. Role defaults that depend on the profile or the pod are
resolved later, in ``injector.core.plan``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from contract.reload import RELOAD_HELP, ReloadTarget, SignalTarget, parse_reload
from contract.units import (
    BOOL_HELP,
    DURATION_HELP,
    PORT_HELP,
    RATE_HELP,
    RETRY_ON_HELP,
    format_duration,
    parse_bool,
    parse_duration,
    parse_port,
    parse_positive_int,
    parse_rate,
)
from injector.core.annotations import FIXED_KEYS, NAMESPACE_LABEL, PREFIX, ROLES, STATUS
from injector.core.quantities import CPU_HELP, MEMORY_HELP, parse_cpu, parse_memory
from injector.core.values import (
    NAME_HELP,
    PATH_HELP,
    SOURCE_HELP,
    UPSTREAM_HELP,
    parse_abs_path,
    parse_name,
    parse_names,
    parse_retry_on,
    parse_source,
    parse_upstream,
)
from injector.errors import InjectionDenied

T = TypeVar("T")
SECRET_PATH_HELP = (
    "a Vault path such as secret/data/app/db, secret/data/app/db?version=2 or "  # noqa: S105
    "database/creds/app"
)
_MOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@=+\-/]*$")
_SECRET_PATH = re.compile(_MOUNT.pattern[:-1] + r"(\?version=[0-9]+)?$")
SECRETS_MODES = ("init", "sidecar", "both")
NATIVE_MODES = ("auto", "true", "false")


@dataclass(frozen=True)
class ProxyRequest:
    upstream: str | None = None
    inbound_port: int | None = None
    timeout: str | None = None
    retries: int | None = None
    retry_on: str | None = None
    rate_limit: str | None = None
    max_connections: int | None = None
    outlier_5xx: int | None = None


@dataclass(frozen=True)
class SecretRequest:
    name: str
    path: str
    template: str | None = None


@dataclass(frozen=True)
class SecretsRequest:
    secrets: tuple[SecretRequest, ...]
    role: str | None = None
    auth_path: str | None = None
    vault_addr: str | None = None
    mode: str | None = None


@dataclass(frozen=True)
class ConfigRequest:
    source: str
    path: str | None = None
    interval: str | None = None


@dataclass(frozen=True)
class Overrides:
    """Per-pod ``<role>-image`` / ``-cpu`` / ``-memory``, checked against bounds in plan."""

    image: str | None = None
    cpu: str | None = None
    memory: str | None = None


@dataclass(frozen=True)
class PodRequest:
    inject: bool | None = None  # the pod's own inject annotation
    profile: str | None = None
    proxy: ProxyRequest | None = None
    secrets: SecretsRequest | None = None
    config: ConfigRequest | None = None
    reload: ReloadTarget | None = None
    containers: tuple[str, ...] | None = None
    native_sidecars: str | None = None
    overrides: Mapping[str, Overrides] = field(default_factory=lambda: MappingProxyType({}))
    status: str | None = None
    warnings: tuple[str, ...] = ()
    ours: bool = False  # any annotation under the prefix

    @property
    def roles(self) -> tuple[str, ...]:
        present = {"proxy": self.proxy, "secrets": self.secrets, "config": self.config}
        return tuple(role for role in ROLES if present[role] is not None)

    @property
    def signal_reload(self) -> bool:
        return isinstance(self.reload, SignalTarget)


@dataclass(frozen=True)
class NamespaceInfo:
    """What the injector knows of the pod's namespace: its name and labels."""

    name: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def injection_default(self) -> tuple[bool | None, str | None]:
        """(default from the namespace label, warning about a bad label value)."""
        value = self.labels.get(NAMESPACE_LABEL)
        if value is None:
            return None, None
        if value == "enabled":
            return True, None
        if value == "disabled":
            return False, None
        return None, (
            f"namespace {self.name} label {NAMESPACE_LABEL}={value!r} ignored; "
            "use enabled or disabled"
        )


def has_ours(annotations: Mapping[str, Any]) -> bool:
    """Cheap check for the webhook's fast path."""
    return any(key.startswith(PREFIX) for key in annotations)


class _Parser:
    def __init__(self, annotations: Mapping[str, Any]) -> None:
        self.values: dict[str, Any] = {
            k[len(PREFIX) :]: v for k, v in annotations.items() if k.startswith(PREFIX)
        }
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.used: set[str] = set()

    def get(self, key: str, parse: Callable[[str], T], accepted: str) -> T | None:
        if key not in self.values:
            return None
        self.used.add(key)
        raw = self.values[key]
        if not isinstance(raw, str):
            self.errors.append(f"annotation {PREFIX}{key}: {raw!r} is not a string; {accepted}")
            return None
        try:
            return parse(raw)
        except ValueError:
            self.errors.append(
                f"annotation {PREFIX}{key}: {raw!r} is not valid; expected {accepted}"
            )
            return None

    def present(self, *keys: str) -> bool:
        return any(k in self.values for k in keys)


def parse_annotations(annotations: Mapping[str, Any]) -> PodRequest:
    """Parse our annotations; raise ``InjectionDenied`` naming every invalid value."""
    p = _Parser(annotations)
    inject = p.get("inject", parse_bool, BOOL_HELP)
    profile = p.get("profile", parse_name, NAME_HELP)
    status = p.get("status", str, "JSON written by the injector")
    proxy = _proxy(p)
    secrets = _secrets(p)
    config = _config(p)
    reload = p.get("reload", parse_reload, RELOAD_HELP)
    containers = p.get("containers", parse_names, "a comma-separated list of container names")
    native = p.get("native-sidecars", _choice(NATIVE_MODES), "auto, true or false")
    overrides = _overrides(p)
    p.used.add("status")
    if reload is not None and secrets is None and config is None:
        p.warnings.append(
            f"{PREFIX}reload is set but neither secrets nor config is injected; it has no effect"
        )
    for key in sorted(set(p.values) - p.used):
        p.warnings.append(_unknown(key))
    if p.errors:
        denied = InjectionDenied("; ".join(p.errors))
        denied.warnings = tuple(p.warnings)
        raise denied
    return PodRequest(
        inject=inject,
        profile=profile,
        proxy=proxy,
        secrets=secrets,
        config=config,
        reload=reload,
        containers=containers,
        native_sidecars=native,
        overrides=MappingProxyType(overrides),
        status=status,
        warnings=tuple(p.warnings),
        ours=bool(p.values),
    )


def _proxy(p: _Parser) -> ProxyRequest | None:
    wanted = p.get("proxy", parse_bool, BOOL_HELP)
    request = ProxyRequest(
        upstream=p.get("proxy-upstream", parse_upstream, UPSTREAM_HELP),
        inbound_port=p.get("proxy-inbound-port", parse_port, PORT_HELP),
        timeout=p.get("proxy-timeout", _duration, DURATION_HELP),
        retries=p.get("proxy-retries", _retries, "a whole number from 0 to 10"),
        retry_on=p.get("proxy-retry-on", parse_retry_on, RETRY_ON_HELP),
        rate_limit=p.get("proxy-rate-limit", lambda t: str(parse_rate(t)), RATE_HELP),
        max_connections=p.get("proxy-max-connections", _at_least_one, "a whole number >= 1"),
        outlier_5xx=p.get("proxy-outlier-5xx", _at_least_one, "a whole number >= 1"),
    )
    tuned = sorted(k for k in p.values if k.startswith("proxy-") and k in FIXED_KEYS)
    tuned = [k for k in tuned if k not in ("proxy-image", "proxy-cpu", "proxy-memory")]
    if wanted is False:
        if tuned:
            p.warnings.append(
                f'{PREFIX}proxy is "false": {", ".join(PREFIX + k for k in tuned)} ignored'
            )
        return None
    other_role = p.present("config-source") or any(_secret_name(k) for k in p.values)
    if wanted or tuned or not other_role:
        return request
    return None


def _secret_name(key: str) -> str | None:
    if key.startswith("secret-") and not key.startswith("secret-template-"):
        return key[len("secret-") :]
    return None


def _secrets(p: _Parser) -> SecretsRequest | None:
    secrets: list[SecretRequest] = []
    templates: dict[str, str] = {}
    for key in sorted(p.values):
        if key.startswith("secret-template-"):
            name = key[len("secret-template-") :]
            template = p.get(key, _non_empty, "`json` or a template")
            if not _valid_name(name):
                p.errors.append(
                    f"annotation {PREFIX}{key}: secret name {name!r} is not {NAME_HELP}"
                )
            elif template is not None:
                templates[name] = template
    for key in sorted(p.values):
        secret = _secret_name(key)
        if secret is None:
            continue
        path = p.get(key, _secret_path, SECRET_PATH_HELP)
        if not _valid_name(secret):
            p.errors.append(f"annotation {PREFIX}{key}: secret name {secret!r} is not {NAME_HELP}")
        elif path is not None:
            secrets.append(SecretRequest(secret, path, templates.pop(secret, None)))
    for name in sorted(templates):
        if not p.present(f"secret-{name}"):
            p.errors.append(
                f"annotation {PREFIX}secret-template-{name}: there is no {PREFIX}secret-{name}; "
                "add the secret or remove its template"
            )
    role = p.get("secrets-role", _non_empty, "a Vault role name")
    auth_path = p.get("secrets-auth-path", _mount, "a Vault auth mount such as kubernetes")
    vault = p.get("secrets-vault-addr", parse_upstream_like, "an http:// or https:// URL")
    mode = p.get("secrets-mode", _choice(SECRETS_MODES), "init, sidecar or both")
    if not secrets:
        set_keys = [
            k
            for k in ("secrets-role", "secrets-auth-path", "secrets-vault-addr", "secrets-mode")
            if k in p.values
        ]
        if set_keys:
            p.warnings.append(
                f"{', '.join(PREFIX + k for k in set_keys)} set without any "
                f"{PREFIX}secret-NAME; no secrets are injected"
            )
        return None
    return SecretsRequest(tuple(secrets), role, auth_path, vault, mode)


def _config(p: _Parser) -> ConfigRequest | None:
    source = p.get("config-source", parse_source, SOURCE_HELP)
    path = p.get("config-path", parse_abs_path, PATH_HELP)
    interval = p.get("config-interval", _positive_duration, DURATION_HELP + ", more than 0s")
    if source is None:
        if p.present("config-path", "config-interval") and not p.present("config-source"):
            p.warnings.append(
                f"{PREFIX}config-path/config-interval set without {PREFIX}config-source; "
                "no config is injected"
            )
        return None
    return ConfigRequest(source, path, interval)


def _overrides(p: _Parser) -> dict[str, Overrides]:
    result: dict[str, Overrides] = {}
    for role in ROLES:
        image = p.get(f"{role}-image", _image, "an image reference such as registry/name:tag")
        cpu = p.get(f"{role}-cpu", lambda t: _quantity(t, parse_cpu), CPU_HELP)
        memory = p.get(f"{role}-memory", lambda t: _quantity(t, parse_memory), MEMORY_HELP)
        if image or cpu or memory:
            result[role] = Overrides(image, cpu, memory)
    return result


def _unknown(key: str) -> str:
    candidates = list(FIXED_KEYS)
    if key.startswith("secrets-"):
        candidates.append("secret-" + key[len("secrets-") :])
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    hint = f"; did you mean {PREFIX}{match[0]}?" if match else "; see the annotation reference"
    return f"unknown annotation {PREFIX}{key} ignored{hint}"


# --- value parsers -------------------------------------------------------------


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(text)
        return value

    return parse


def _duration(text: str) -> str:
    return format_duration(parse_duration(text))


def _positive_duration(text: str) -> str:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(text)
    return format_duration(seconds)


def _retries(text: str) -> int:
    return parse_positive_int(text, maximum=10)


def _at_least_one(text: str) -> int:
    value = parse_positive_int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError(text)
    return text.strip()


def _mount(text: str) -> str:
    value = text.strip().strip("/")
    if not value or not _MOUNT.match(value):
        raise ValueError(text)
    return value


def _secret_path(text: str) -> str:
    value = text.strip()
    if not _SECRET_PATH.match(value) or ".." in value.split("/") or value.endswith("/"):
        raise ValueError(text)
    return value


def parse_upstream_like(text: str) -> str:
    value = text.strip()
    if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
        raise ValueError(text)
    return value.rstrip("/")


def _image(text: str) -> str:
    value = text.strip()
    if not value or any(c.isspace() for c in value) or value.startswith(("/", "-")):
        raise ValueError(text)
    return value


def _quantity(text: str, parse: Callable[[str], object]) -> str:
    parse(text)
    return text.strip()


def _valid_name(name: str) -> bool:
    try:
        parse_name(name)
    except ValueError:
        return False
    return True


__all__ = [
    "STATUS",
    "ConfigRequest",
    "NamespaceInfo",
    "Overrides",
    "PodRequest",
    "ProxyRequest",
    "SecretRequest",
    "SecretsRequest",
    "has_ours",
    "parse_annotations",
]
