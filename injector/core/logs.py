"""The logs role's plan: its rows (the pod's over the profile's) plus what
the pod itself decides.

* ``SIDECAR_LOGS_CONTAINER``: the app containers that get the logs path
  (they write the files; every record names them);
* ``SIDECAR_LOGS_DRAIN_TIMEOUT``: the pod's ``terminationGracePeriodSeconds``
  less 2 s when the pod sets one (the kubelet's SIGKILL ends the drain
  anyway; this leaves the agent time to exit on its own);
* ``SIDECAR_LOGS_SINK_AUTH_FILE``: where the ``logs-sink-auth`` Secret key
  is mounted (``injector.core.containers`` adds the volume).

Pure. The agent always runs as the injector's UID: it reads the app's files
through their mode, it never signals the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contract import layout
from contract import logs as rows
from contract.knobs import Values
from injector.core.model import PodRequest
from injector.core.settings import Profile

GRACE_MARGIN = 2.0  # seconds the agent keeps for itself before the kubelet's SIGKILL


def logs_values(
    request: PodRequest,
    profile: Profile,
    spec: Mapping[str, Any],
    app_containers: tuple[str, ...],
) -> Values:
    knobs = rows.ROLE.knobs
    values = request.values.only(knobs).over(profile.values.only(knobs))
    changes: dict[Any, object] = {rows.CONTAINER: ",".join(app_containers)}
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and not isinstance(grace, bool) and grace >= 0:
        changes[rows.DRAIN_TIMEOUT] = max(0.0, grace - GRACE_MARGIN)
    if values.get(rows.SINK_AUTH) is not None:
        changes[rows.SINK_AUTH_FILE] = Path(layout.LOGS_AUTH_FILE)
    return values.with_values(changes)


def job_warning() -> str:
    return (
        "the pod belongs to a Job and runs classic sidecars: the app must call "
        f"POST http://127.0.0.1:{layout.LOGS_AGENT_PORT}/quitquitquit when done (the logs "
        "agent ships what is left, then exits) or the Job never completes"
    )
