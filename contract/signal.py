"""The ``signal`` role: the container that signals the app for ``reload:
signal:...``, and nothing else.

The agents that hold secrets (the Vault token, the API token) never run as
the app's user: whatever runs as that user can read their memory, variables
and mounts through ``/proc``. When the app wants a signal, the injector adds
this container, running as the app's user with no volume and no secret, and
points the agents' ``SIDECAR_RELOAD`` at its ``POST /reload``
(``RELOAD_URL``), which only the pod's own containers reach (127.0.0.1).
"""

from __future__ import annotations

from contract import layout, values
from contract.common import LOG_LEVEL
from contract.knobs import Knob, Role, Value
from contract.reload import HttpTarget, SignalTarget, parse_reload

SIGNAL_HELP = "SIGNAME or SIGNAME:process-name, e.g. SIGHUP or SIGHUP:nginx"


def parse_signal(text: str) -> SignalTarget:
    target = parse_reload("signal:" + text.strip().removeprefix("signal:"))
    if not isinstance(target, SignalTarget):  # pragma: no cover - the prefix makes it one
        raise ValueError(f"{text!r} is not {SIGNAL_HELP}")
    return target


def format_signal(target: SignalTarget) -> str:
    return str(target).removeprefix("signal:")


SIGNAL: Knob[SignalTarget] = Knob(
    "target",
    Value(SIGNAL_HELP, parse_signal, format_signal),
    "the signal to send, and the name of the app's processes to send it to",
    env="SIDECAR_SIGNAL",
    flag="--signal",
    example="SIGHUP:nginx",
)
AGENT_ADDR: Knob[tuple[str, int]] = Knob(
    "agent_addr",
    values.ADDRESS,
    "where POST /reload, /healthz, /ready and /metrics are served (loopback: the pod only)",
    env="SIDECAR_AGENT_ADDR",
    flag="--agent-addr",
    default=f"127.0.0.1:{layout.SIGNAL_AGENT_PORT}",
    id=f"agent_addr:{layout.SIGNAL_AGENT_PORT}",
)
ROLE = Role(
    "signal",
    "signals the app for reload: signal, as the app's user, holding nothing",
    layout.SIGNAL_AGENT_PORT,
    (AGENT_ADDR, LOG_LEVEL, SIGNAL),
)
# What the agents POST to instead of signalling themselves.
RELOAD_URL = HttpTarget("POST", f"http://127.0.0.1:{layout.SIGNAL_AGENT_PORT}/reload")
