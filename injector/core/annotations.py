"""The annotation API as data: every key users may write, what it means, what
it accepts and its default.

``injector.core.model`` parses with it, ``sidecar-injector annotations --markdown``
prints it as the README's reference table (a test keeps the README equal to
that output), and unknown keys are matched against it for "did you mean".
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "sidecar.example.io/"
NAMESPACE_LABEL = PREFIX + "injection"
STATUS = PREFIX + "status"
ROLES = ("proxy", "secrets", "config")


@dataclass(frozen=True)
class Annotation:
    key: str  # without the prefix; NAME or <role> mark a pattern
    meaning: str
    accepted: str
    default: str

    @property
    def full_key(self) -> str:
        return PREFIX + self.key


ANNOTATIONS: tuple[Annotation, ...] = (
    Annotation(
        "inject",
        "opt the pod in or out of injection",
        '"true" or "false"',
        'the namespace label `sidecar.example.io/injection: enabled` makes it "true"',
    ),
    Annotation("profile", "take defaults from this SidecarProfile", "a profile name", "default"),
    Annotation(
        "status",
        "written by the injector: roles, version, containers and volumes it added",
        "(do not set)",
        "",
    ),
    Annotation(
        "proxy",
        "add the Envoy proxy sidecar",
        '"true" or "false"',
        '"true" when no secrets or config role is asked for, or any `proxy-*` key is set',
    ),
    Annotation(
        "proxy-upstream",
        "outbound: the app calls 127.0.0.1:15001, the proxy calls this URL",
        "an http:// or https:// URL, host and port only",
        "none",
    ),
    Annotation(
        "proxy-inbound-port",
        "inbound: the proxy listens on 15006 and forwards to this app port",
        "a port from 1 to 65535",
        "without an upstream: the first containerPort of the first app container",
    ),
    Annotation(
        "proxy-timeout",
        "route timeout, all tries together",
        "a duration: 500ms, 15s, 1m; 0s for none",
        "15s",
    ),
    Annotation("proxy-retries", "outbound retry count", "0 to 10", "2"),
    Annotation(
        "proxy-retry-on",
        "outbound retry conditions",
        "comma-separated Envoy retry_on values, e.g. 5xx,connect-failure",
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,5xx",
    ),
    Annotation(
        "proxy-rate-limit",
        "local rate limit per listener (429 above it)",
        "a rate: 100/s, 600/m, 1000/h",
        "none",
    ),
    Annotation(
        "proxy-max-connections",
        "circuit breaker: max connections, pending and requests",
        "a whole number, at least 1",
        "1024",
    ),
    Annotation(
        "proxy-outlier-5xx",
        "consecutive 5xx before an upstream host is ejected",
        "a whole number, at least 1",
        "none",
    ),
    Annotation(
        "secret-NAME",
        "Vault secret at this path, rendered to /var/run/secrets/sidecar/NAME",
        "a Vault API path: secret/data/app/db (KV v2, ?version=N pins one), kv/app/db "
        "(KV v1), database/creds/app (dynamic); NAME a DNS label",
        "",
    ),
    Annotation(
        "secret-template-NAME",
        "how the file of secret NAME is rendered",
        "`json`, or a Jinja2 template",
        "`key: value` lines",
    ),
    Annotation(
        "secrets-role", "Vault kubernetes auth role", "a role name", "the profile's Vault role"
    ),
    Annotation(
        "secrets-auth-path",
        "Vault kubernetes auth mount",
        "a mount path",
        "the profile's, else kubernetes",
    ),
    Annotation(
        "secrets-vault-addr",
        "Vault address",
        "an http:// or https:// URL",
        "the profile's Vault address",
    ),
    Annotation(
        "secrets-mode",
        "prepopulate before the app starts, refresh while it runs, or both",
        "init, sidecar or both",
        "both (init for Job pods without native sidecars)",
    ),
    Annotation(
        "config-source",
        "where configuration comes from",
        "an http(s):// URL, configmap:NAME or secret:NAME",
        "none",
    ),
    Annotation(
        "config-path",
        "where configuration appears in the app containers (read-only)",
        "an absolute path",
        "/etc/sidecar/config",
    ),
    Annotation(
        "config-interval", "how often the source is checked", "a duration such as 30s", "30s"
    ),
    Annotation(
        "reload",
        "how the app is told that secrets or config changed",
        "an http(s) URL (POST), `GET URL`, or `signal:SIGHUP[:process-name]`",
        "none",
    ),
    Annotation(
        "containers",
        "app containers that get the shared mounts",
        "comma-separated container names",
        "all app containers",
    ),
    Annotation(
        "native-sidecars",
        "sidecars as initContainers with restartPolicy: Always",
        "auto, true or false",
        "the profile's, else auto (native on Kubernetes 1.29+)",
    ),
    Annotation(
        "<role>-image",
        "image of the proxy, secrets or config containers",
        "an image under a registry the profile allows",
        "the profile's image",
    ),
    Annotation(
        "<role>-cpu",
        "CPU limit of that role's containers (request: the smaller of the profile's and this)",
        "a CPU quantity within the profile's bounds, e.g. 500m",
        "the profile's",
    ),
    Annotation(
        "<role>-memory",
        "memory limit of that role's containers (request: the smaller of the profile's and this)",
        "a memory quantity within the profile's bounds, e.g. 128Mi",
        "the profile's",
    ),
)

# Keys without a pattern, spelled out (used for "did you mean").
FIXED_KEYS: tuple[str, ...] = tuple(
    [a.key for a in ANNOTATIONS if "NAME" not in a.key and "<role>" not in a.key]
    + [f"{role}-{what}" for role in ROLES for what in ("image", "cpu", "memory")]
)


def markdown_table() -> str:
    lines = [
        f"| annotation (prefix `{PREFIX}`) | meaning | accepted values | default |",
        "|---|---|---|---|",
    ]
    for a in ANNOTATIONS:
        cells = (f"`{a.key}`", a.meaning, a.accepted, a.default or "-")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines.append(
        f"Namespace label `{NAMESPACE_LABEL}`: `enabled` makes `inject` default to "
        '"true" in that namespace, `disabled` to "false"; the pod annotation wins.'
    )
    return "\n".join(lines) + "\n"
