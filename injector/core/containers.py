"""The containers and volumes each role adds, exactly as docs/runtime.md says.

Pure builders from a ``Plan`` to plain Kubernetes dicts.
"""

from __future__ import annotations

from typing import Any

from injector.core.plan import AGENT_PORTS, PROXY_PORTS, Plan, RoleSpec

SECRETS_DIR = "/var/run/secrets/sidecar"
STATE_DIR = "/var/run/sidecar/state"
TOKEN_DIR = "/var/run/sidecar/token"  # noqa: S105
CONFIG_DIR = "/var/run/sidecar/config"
PROXY_WORK_DIR = "/var/run/sidecar/proxy"

PROXY = "sidecar-proxy"
SECRETS_INIT = "sidecar-secrets-init"
SECRETS = "sidecar-secrets"
CONFIG_INIT = "sidecar-config-init"
CONFIG = "sidecar-config"

VOLUME_PROXY = "sidecar-proxy"
VOLUME_SECRETS = "sidecar-secrets"
VOLUME_STATE = "sidecar-secrets-state"
VOLUME_TOKEN = "sidecar-vault-token"  # noqa: S105
VOLUME_CONFIG = "sidecar-config"

# The classic proxy's postStart hook (docs/runtime.md): holds the app until the
# proxy's /ready answers 200, or fails the container after the timeout.
WAIT_READY = ["sidecar", "proxy", "--wait-ready", "--wait-timeout", "60s"]

PORT_NAMES = {"outbound": "sidecar-out", "inbound": "sidecar-in", "agent": "sidecar-agent"}


def volumes(plan: Plan) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    if plan.role("proxy"):
        result.append({"name": VOLUME_PROXY, "emptyDir": {"sizeLimit": "16Mi"}})
    if plan.role("secrets"):
        result += [
            {"name": VOLUME_SECRETS, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            {"name": VOLUME_STATE, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            {
                "name": VOLUME_TOKEN,
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": "vault",
                                "expirationSeconds": 3600,
                                "path": "token",
                            }
                        }
                    ]
                },
            },
        ]
    if plan.role("config"):
        result.append({"name": VOLUME_CONFIG, "emptyDir": {"sizeLimit": "16Mi"}})
    return result


def app_mounts(plan: Plan) -> list[dict[str, Any]]:
    """Mounts added to each selected app container (read-only)."""
    result: list[dict[str, Any]] = []
    if plan.role("secrets"):
        result.append({"name": VOLUME_SECRETS, "mountPath": SECRETS_DIR, "readOnly": True})
    if plan.role("config"):
        result.append({"name": VOLUME_CONFIG, "mountPath": plan.config_path, "readOnly": True})
    return result


def proxy_container(plan: Plan, spec: RoleSpec) -> dict[str, Any]:
    ports = [
        {"name": PORT_NAMES["agent"], "containerPort": AGENT_PORTS["proxy"], "protocol": "TCP"}
    ]
    if plan.proxy_upstream:
        ports.insert(
            0,
            {
                "name": PORT_NAMES["outbound"],
                "containerPort": PROXY_PORTS["outbound"],
                "protocol": "TCP",
            },
        )
    if plan.proxy_inbound:
        ports.insert(
            len(ports) - 1,
            {
                "name": PORT_NAMES["inbound"],
                "containerPort": PROXY_PORTS["inbound"],
                "protocol": "TCP",
            },
        )
    env = _env(spec)
    env.append(
        {
            "name": "SIDECAR_CONCURRENCY",
            "valueFrom": {
                "resourceFieldRef": {
                    "containerName": PROXY,
                    "resource": "limits.cpu",
                    "divisor": "1",
                }
            },
        }
    )
    container = _container(plan, spec, PROXY, ["sidecar", "proxy"], env)
    container["ports"] = ports
    container["volumeMounts"] = [{"name": VOLUME_PROXY, "mountPath": PROXY_WORK_DIR}]
    ready = {"httpGet": {"path": "/ready", "port": AGENT_PORTS["proxy"]}}
    container["readinessProbe"] = ready | {"periodSeconds": 5, "failureThreshold": 3}
    if plan.native:
        container["restartPolicy"] = "Always"
        container["startupProbe"] = ready | {"periodSeconds": 1, "failureThreshold": 120}
    else:
        # The kubelet starts containers in order and waits for each postStart
        # hook: with the proxy first, the app starts once the proxy is ready.
        container["lifecycle"] = {"postStart": {"exec": {"command": WAIT_READY}}}
    return container


def secrets_container(plan: Plan, spec: RoleSpec, *, init: bool) -> dict[str, Any]:
    env = _env(spec)
    if not init and plan.reload is not None:
        env.append({"name": "SIDECAR_RELOAD", "value": str(plan.reload)})
    command = ["sidecar", "secrets", "--init"] if init else ["sidecar", "secrets"]
    container = _container(plan, spec, SECRETS_INIT if init else SECRETS, command, env)
    container["volumeMounts"] = [
        {"name": VOLUME_SECRETS, "mountPath": SECRETS_DIR},
        {"name": VOLUME_STATE, "mountPath": STATE_DIR},
        {"name": VOLUME_TOKEN, "mountPath": TOKEN_DIR, "readOnly": True},
    ]
    if not init and plan.native:
        container["restartPolicy"] = "Always"
    return container


def config_container(plan: Plan, spec: RoleSpec, *, init: bool) -> dict[str, Any]:
    env = _env(spec)
    env.append(
        {
            "name": "SIDECAR_POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        }
    )
    if not init and plan.reload is not None:
        env.append({"name": "SIDECAR_RELOAD", "value": str(plan.reload)})
    command = ["sidecar", "config", "--init"] if init else ["sidecar", "config"]
    container = _container(plan, spec, CONFIG_INIT if init else CONFIG, command, env)
    container["volumeMounts"] = [{"name": VOLUME_CONFIG, "mountPath": CONFIG_DIR}]
    if not init and plan.native:
        container["restartPolicy"] = "Always"
    return container


def _env(spec: RoleSpec) -> list[dict[str, Any]]:
    return [{"name": name, "value": value} for name, value in spec.env]


def _container(
    plan: Plan, spec: RoleSpec, name: str, command: list[str], env: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": plan.pull_policy,
        "command": command,
        "env": env,
        "resources": spec.resources.to_k8s(),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": spec.user,
            "runAsGroup": spec.group,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
