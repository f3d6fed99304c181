"""The containers and volumes each role adds, exactly as docs/runtime.md says.

Pure builders from a ``Plan`` to plain Kubernetes dicts. Names, ports and
paths come from ``contract.layout``; each container's ``SIDECAR_*``
variables from its role's values (``contract.knobs.environment``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract import config, layout, proxy, signal
from contract import logs as logs_rows
from contract.catalogue import role as contract_role
from contract.common import RELOAD
from contract.knobs import Values, environment
from injector.core.mesh import enabled
from injector.core.mesh_volumes import mesh_env, mesh_mounts, mesh_volumes
from injector.core.plan import Plan, RoleSpec

# The classic proxy's postStart hook (docs/runtime.md): holds the app until the
# proxy's /ready answers 200, or fails the container after the timeout.
WAIT_READY = ["sidecar", "proxy", "--wait-ready", "--wait-timeout", "60s"]

PORT_NAMES = {"outbound": "sidecar-out", "inbound": "sidecar-in", "agent": "sidecar-agent"}


def volumes(plan: Plan) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    proxy_spec = plan.role("proxy")
    if proxy_spec:
        if enabled(proxy_spec.values):  # it holds the pod's private key: memory only
            work = {"medium": "Memory", "sizeLimit": "16Mi"}
            result.append({"name": layout.PROXY_VOLUME, "emptyDir": work})
            result += mesh_volumes(proxy_spec)
        else:
            result.append({"name": layout.PROXY_VOLUME, "emptyDir": {"sizeLimit": "16Mi"}})
    if plan.role("secrets"):
        result += [
            {"name": layout.SECRETS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            {"name": layout.STATE_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            {
                "name": layout.TOKEN_VOLUME,
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": layout.VAULT_AUDIENCE,
                                "expirationSeconds": 3600,
                                "path": "token",
                            }
                        }
                    ]
                },
            },
        ]
    if plan.role("config"):
        result.append({"name": layout.CONFIG_VOLUME, "emptyDir": {"sizeLimit": "16Mi"}})
    logs = plan.role("logs")
    if logs:
        # No sizeLimit on the app's files: exceeding one evicts the pod; they count
        # against the pod's ephemeral storage like any file the app writes.
        result.append({"name": layout.LOGS_VOLUME, "emptyDir": {}})
        result.append({"name": layout.LOGS_STATE_VOLUME, "emptyDir": {"sizeLimit": "1Mi"}})
        auth = logs.get(logs_rows.SINK_AUTH)
        if auth is not None:
            item = {"key": auth.key, "path": Path(layout.LOGS_AUTH_FILE).name}
            secret = {"secretName": auth.name, "items": [item], "defaultMode": 0o444}
            result.append({"name": layout.LOGS_AUTH_VOLUME, "secret": secret})
    return result


def app_mounts(plan: Plan) -> list[dict[str, Any]]:
    """Mounts added to each selected app container (read-only)."""
    result: list[dict[str, Any]] = []
    if plan.role("secrets"):
        result.append(
            {"name": layout.SECRETS_VOLUME, "mountPath": layout.SECRETS_DIR, "readOnly": True}
        )
    if plan.role("config"):
        result.append(
            {"name": layout.CONFIG_VOLUME, "mountPath": plan.config_path, "readOnly": True}
        )
    logs = plan.role("logs")
    if logs:  # the app writes its files here
        result.append({"name": layout.LOGS_VOLUME, "mountPath": logs.get(logs_rows.PATH)})
    return result


def proxy_container(plan: Plan, spec: RoleSpec) -> dict[str, Any]:
    ports = [
        {"name": PORT_NAMES["agent"], "containerPort": layout.PROXY_AGENT_PORT, "protocol": "TCP"}
    ]
    if spec.get(proxy.UPSTREAM) is not None:
        ports.insert(
            0,
            {
                "name": PORT_NAMES["outbound"],
                "containerPort": layout.OUTBOUND_PORT,
                "protocol": "TCP",
            },
        )
    if spec.get(proxy.INBOUND_PORT) is not None:
        ports.insert(
            len(ports) - 1,
            {
                "name": PORT_NAMES["inbound"],
                "containerPort": layout.INBOUND_PORT,
                "protocol": "TCP",
            },
        )
    env = _env(spec)
    env.append(
        {
            "name": proxy.CONCURRENCY.env,
            "valueFrom": {
                "resourceFieldRef": {
                    "containerName": layout.PROXY_CONTAINER,
                    "resource": "limits.cpu",
                    "divisor": "1",
                }
            },
        }
    )
    mounts = [{"name": layout.PROXY_VOLUME, "mountPath": layout.PROXY_WORK_DIR}]
    if enabled(spec.values):
        env += mesh_env()
        mounts += mesh_mounts(spec)
    container = _container(plan, spec, layout.PROXY_CONTAINER, ["sidecar", "proxy"], env)
    container["ports"] = ports
    container["volumeMounts"] = mounts
    ready = {"httpGet": {"path": "/ready", "port": layout.PROXY_AGENT_PORT}}
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
    env = _env(spec, init=init)
    command = ["sidecar", "secrets", "--init"] if init else ["sidecar", "secrets"]
    container = _container(
        plan,
        spec,
        layout.SECRETS_INIT_CONTAINER if init else layout.SECRETS_CONTAINER,
        command,
        env,
    )
    container["volumeMounts"] = [
        {"name": layout.SECRETS_VOLUME, "mountPath": layout.SECRETS_DIR},
        {"name": layout.STATE_VOLUME, "mountPath": layout.STATE_DIR},
        {"name": layout.TOKEN_VOLUME, "mountPath": layout.TOKEN_DIR, "readOnly": True},
    ]
    if not init and plan.native:
        container["restartPolicy"] = "Always"
    return container


def config_container(plan: Plan, spec: RoleSpec, *, init: bool) -> dict[str, Any]:
    env = _env(spec, init=init)
    env.append(
        {
            "name": config.NAMESPACE.env,
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        }
    )
    command = ["sidecar", "config", "--init"] if init else ["sidecar", "config"]
    container = _container(
        plan, spec, layout.CONFIG_INIT_CONTAINER if init else layout.CONFIG_CONTAINER, command, env
    )
    container["volumeMounts"] = [{"name": layout.CONFIG_VOLUME, "mountPath": layout.CONFIG_DIR}]
    if not init and plan.native:
        container["restartPolicy"] = "Always"
    return container


def signal_container(plan: Plan) -> dict[str, Any]:
    """``sidecar-signal``: the app's user, no volume, no secret (``contract.signal``)."""
    sender = plan.signaller
    assert sender is not None
    values = Values({signal.SIGNAL: sender.target})
    env = [{"name": n, "value": v} for n, v in environment(signal.ROLE, values)]
    container = {
        "name": layout.SIGNAL_CONTAINER,
        "image": sender.image,
        "imagePullPolicy": plan.pull_policy,
        "command": ["sidecar", "signal"],
        "env": env,
        "resources": sender.resources.to_k8s(),
        "securityContext": _security(sender.user, sender.group),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if plan.native:
        container["restartPolicy"] = "Always"
    return container


def logs_container(plan: Plan, spec: RoleSpec) -> dict[str, Any]:
    """The logs agent: the logs path read-only at the same path as in the app,
    its positions in a volume that outlives the container, the pod's identity
    from the downward API."""
    env = _env(spec)
    env += [
        _field_ref(config.NAMESPACE.env, "metadata.namespace"),
        _field_ref(logs_rows.POD_NAME.env, "metadata.name"),
        _field_ref(logs_rows.NODE_NAME.env, "spec.nodeName"),
    ]
    keys: tuple[str, ...] = spec.get(logs_rows.LABEL_KEYS) or ()
    for index, key in enumerate(keys):
        env.append(_field_ref(logs_rows.LABEL_VALUE_ENV.format(index), f"metadata.labels['{key}']"))
    container = _container(plan, spec, layout.LOGS_CONTAINER, ["sidecar", "logs"], env)
    container["volumeMounts"] = [
        {"name": layout.LOGS_VOLUME, "mountPath": spec.get(logs_rows.PATH), "readOnly": True},
        {"name": layout.LOGS_STATE_VOLUME, "mountPath": layout.LOGS_STATE_DIR},
    ]
    if spec.get(logs_rows.SINK_AUTH) is not None:
        container["volumeMounts"].append(
            {"name": layout.LOGS_AUTH_VOLUME, "mountPath": layout.LOGS_AUTH_DIR, "readOnly": True}
        )
    ready = {"httpGet": {"path": "/ready", "port": layout.LOGS_AGENT_PORT}}
    container["readinessProbe"] = ready | {"periodSeconds": 10, "failureThreshold": 3}
    if plan.native:
        container["restartPolicy"] = "Always"
        # The app starts once the agent reads (its first lines are not missed),
        # and the pod is Ready then: a readiness probe alone, failing once
        # before the agent listens, would hold Ready for a whole period.
        container["startupProbe"] = ready | {"periodSeconds": 1, "failureThreshold": 120}
    return container


def capture_container(plan: Plan, spec: RoleSpec) -> dict[str, Any]:
    """The capture init container (``sidecar capture``), first of the pod: the
    only injected container with privileges, and only these two. iptables
    needs NET_ADMIN and NET_RAW in its effective set, which a container gets
    only as user 0 (Kubernetes grants no ambient capabilities)."""
    container = _container(
        plan, spec, layout.CAPTURE_INIT_CONTAINER, ["sidecar", "capture"], _env(spec)
    )
    container["securityContext"] |= {
        "runAsNonRoot": False,
        "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
    }
    return container


def _field_ref(name: str | None, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _env(spec: RoleSpec, *, init: bool = False) -> list[dict[str, Any]]:
    """The role's variables; an init container is never told to reload the app."""
    values = spec.values.with_values({RELOAD: None}) if init else spec.values
    env = environment(contract_role(spec.role), values)
    return [{"name": name, "value": value} for name, value in env]


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
        "securityContext": _security(spec.user, spec.group),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _security(user: int, group: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": group,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
