"""``reload: signal:...``: who sends the signal.

Only a process running as the app's user, in the app's PID namespace, can
signal the app; and anything running as that user can read the memory,
variables and mounts of every other such process. So the agents that hold
the Vault token and the secrets keep their own user (1337) and the injector
adds ``sidecar-signal`` (``contract.signal``): the app's user, no volume, no
secret, ``shareProcessNamespace: true``; the agents' reload target becomes
its ``POST /reload`` on 127.0.0.1. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from contract import layout
from contract.common import RELOAD
from contract.reload import SignalTarget
from contract.signal import RELOAD_URL
from injector.core.settings import SMALL, Profile, Resources
from injector.core.views import Container, PodSecurityContext
from injector.errors import InjectionDenied

if TYPE_CHECKING:  # plan imports this module
    from injector.core.plan import RoleSpec


@dataclass(frozen=True)
class Signaller:
    """The ``sidecar-signal`` container: what it sends, as whom, from which image."""

    target: SignalTarget
    user: int
    group: int
    image: str
    resources: Resources = SMALL


def signaller(
    target: SignalTarget,
    app: Sequence[Container],
    security: PodSecurityContext,
    profile: Profile,
    roles: Sequence[str],
) -> Signaller:
    """The signaller for ``target``: the app's user (``InjectionDenied`` when the
    app has none, runs as root or as several), the image of the role that reloads."""
    user, group = app_user(app, security)
    for container in app:
        for port in container.get("ports") or []:
            if port.get("containerPort") == layout.SIGNAL_AGENT_PORT:
                raise InjectionDenied(
                    f"container {container.get('name')} uses port {layout.SIGNAL_AGENT_PORT}, "
                    f"where {layout.SIGNAL_CONTAINER} listens for reload: signal; move the app "
                    "to another port or reload by URL"
                )
    role = next(r for r in ("secrets", "config") if r in roles)
    return Signaller(target, user, group, profile.image_for(role))


def rerouted(spec: RoleSpec) -> RoleSpec:
    """``spec`` with its reload target pointed at ``sidecar-signal``."""
    return replace(spec, values=spec.values.with_values({RELOAD: RELOAD_URL}))


def app_user(app: Sequence[Container], pod_security: PodSecurityContext) -> tuple[int, int]:
    users: set[tuple[int, int]] = set()
    for container in app:
        sc = container.get("securityContext") or {}
        uid = sc.get("runAsUser", pod_security.get("runAsUser"))
        gid = sc.get("runAsGroup", pod_security.get("runAsGroup", uid))
        if not isinstance(uid, int) or isinstance(uid, bool):
            raise InjectionDenied(
                f"annotation {layout.PREFIX}reload: a signal can only be sent by the app's "
                f"own user, and container {container.get('name')} has no runAsUser; set "
                "securityContext.runAsUser on the pod or the container, or reload by URL"
            )
        if uid == 0:
            raise InjectionDenied(
                f"annotation {layout.PREFIX}reload: a signal must come from the app's user, "
                f"and container {container.get('name')} runs as root; run the app as a "
                "non-root user or reload by URL"
            )
        users.add((uid, gid if isinstance(gid, int) and not isinstance(gid, bool) else uid))
    if len(users) > 1:
        raise InjectionDenied(
            f"annotation {layout.PREFIX}reload: the app containers run as different users "
            f"({sorted(users)}); a signal reaches one user only: pick the containers with "
            f"{layout.PREFIX}containers, or reload by URL"
        )
    return users.pop()
