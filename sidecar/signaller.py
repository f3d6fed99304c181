"""``sidecar signal``: the one process that may signal the app, holding nothing.

Reloading the app with a signal needs a process that runs as the app's user
in the app's PID namespace, and whatever runs as that user can read the
memory, environment and mounts of the others (``/proc/PID/mem``,
``/proc/PID/root``). So the agents that hold the Vault token and the secrets
(and the config agent, with its API token) never run as the app's user:
they run as their own (1337) and, when they would signal, POST to this
container instead. It runs as the app's user with ``shareProcessNamespace``,
mounts no volume, gets no token and no secret, and its only power is the
app's own: signalling the app's processes.

``POST /reload`` on ``--agent-addr`` (127.0.0.1:15023: only the pod's own
containers reach it) sends ``--signal`` (``SIGHUP``, or ``SIGHUP:nginx`` for
the processes named nginx) and answers 200, or 503 saying why (no such
process visible, not allowed); the agents retry with back-off. Also
``/healthz``, ``/ready`` and ``/metrics`` (``sidecar_reloads_total``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contract import signal as rows
from contract.common import LOG_LEVEL
from contract.reload import SignalTarget
from sidecar.lifecycle import stop_event
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.options import need, read_knobs, role_parser
from sidecar.reload import Notifier, ReloadFailed
from sidecar.server import AgentServer


@dataclass(frozen=True)
class SignalSettings:
    target: SignalTarget
    agent_host: str
    agent_port: int
    log_level: str


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> SignalSettings:
    env = os.environ if environ is None else environ
    args = role_parser(rows.ROLE, env, (__doc__ or "").split("\n\n")[0]).parse_args(list(argv))
    v = read_knobs(args, rows.ROLE.knobs)
    target = need(v, rows.SIGNAL, rows.SIGNAL_HELP)
    host, port = v.require(rows.AGENT_ADDR)
    return SignalSettings(target, host, port, v.require(LOG_LEVEL))


class Signaller:
    """What ``POST /reload`` does: one attempt, its outcome as (status, text)."""

    def __init__(self, target: SignalTarget, registry: Registry, log: Logger) -> None:
        self.notifier = Notifier(target, registry, log, attempts=1)
        self.log = log

    def reload(self) -> tuple[int, str]:
        try:
            self.notifier.send()  # one attempt: the agent that asked retries
        except ReloadFailed as exc:
            self.notifier.reloads.inc(outcome="failed")
            self.log.warning("signal not sent", error=str(exc))
            return 503, f"{exc}\n"
        self.notifier.reloads.inc(outcome="ok")
        self.log.info("signal sent", target=str(self.notifier.target))
        return 200, "signalled\n"


def main(argv: list[str]) -> int:
    settings = load(argv)
    stop = stop_event()
    log = Logger("signal", settings.log_level)
    registry = Registry("sidecar")
    signaller = Signaller(settings.target, registry, log)
    server = AgentServer(
        settings.agent_host,
        settings.agent_port,
        registry,
        lambda: (True, "ready"),
        on_reload=signaller.reload,
    ).start()
    log.info(
        "serving POST /reload",
        target=str(settings.target),
        address=f"{settings.agent_host}:{server.port}",
        uid=os.getuid(),
    )
    try:
        stop.wait()
    finally:
        server.stop()
    return 0
