"""Rows every role's agent shares: where it serves, how much it logs, how
it tells the app about changes, how long ``--init`` may take."""

from __future__ import annotations

from typing import Any

from contract import values
from contract.knobs import Knob
from contract.reload import ReloadTarget
from contract.values import LogLevel


def agent_addr(port: int) -> Knob[tuple[str, int]]:
    """``SIDECAR_AGENT_ADDR``: /healthz, /ready, /metrics, POST /quitquitquit."""
    return Knob(
        "agent_addr",
        values.ADDRESS,
        "where the agent serves /healthz, /ready, /metrics and POST /quitquitquit",
        env="SIDECAR_AGENT_ADDR",
        flag="--agent-addr",
        default=f"0.0.0.0:{port}",
        id=f"agent_addr:{port}",
    )


LOG_LEVEL: Knob[LogLevel] = Knob(
    "log_level",
    values.LOG_LEVEL,
    "debug, info, warning or error (JSON lines on stderr)",
    env="SIDECAR_LOG_LEVEL",
    flag="--log-level",
    default="info",
)
RELOAD: Knob[ReloadTarget] = Knob(
    "reload",
    values.RELOAD,
    "how the app is told that secrets or config changed",
    env="SIDECAR_RELOAD",
    flag="--reload",
    annotation="reload",
    example="GET http://127.0.0.1:8080/-/reload",
    accepted="an http(s) URL (POST), `GET URL`, or `signal:SIGHUP[:process-name]`",
)
POD_NAMESPACE: Knob[str] = Knob(
    "namespace",
    values.TEXT,
    "the pod's namespace, rendered by the injector (downward API): where config finds its "
    "ConfigMap or Secret; what every logs record says; what the proxy's mesh identity names",
    env="SIDECAR_POD_NAMESPACE",
    flag="--namespace",
    doc_default="config: the in-cluster namespace file",
)
POD_NAME: Knob[str] = Knob(
    "pod_name",
    values.TEXT,
    "the pod's name, rendered by the injector (downward API): in every logs record; in the "
    "proxy's certificate requests (the operator checks it is the token's pod)",
    env="SIDECAR_POD_NAME",
    flag="--pod-name",
)
INIT_DEADLINE: Knob[float] = Knob(
    "deadline",
    values.DURATION,
    "`--init` gives up after this long (exit 1 naming what failed)",
    env="SIDECAR_INIT_DEADLINE",
    flag="--deadline",
    default="60s",
)


def agent(port: int) -> tuple[Knob[Any], ...]:
    """The first rows of every role."""
    return (agent_addr(port), LOG_LEVEL)
