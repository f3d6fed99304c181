"""``sidecar secrets [--init]``: entry point of the secrets role.

``--init`` logs in, renders every secret once, leaves the token and leases
for the refresher, and exits 0; or exits 1 at its deadline saying what
failed (Vault unreachable, role rejected, permission denied for a path, a
template naming a missing key). Without it the agent is the refresher: it
adopts the hand-off, keeps token and secrets fresh, tells the app on change,
and serves /healthz, /ready and /metrics.
"""

from __future__ import annotations

from sidecar.backoff import Deadline
from sidecar.errors import SidecarError
from sidecar.lifecycle import StopEvent, stop_event
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.reload import Notifier
from sidecar.secrets import state
from sidecar.secrets.agent import Agent
from sidecar.secrets.auth import Auth
from sidecar.secrets.settings import SecretsSettings, load
from sidecar.secrets.vault import VaultClient
from sidecar.server import AgentServer


def main(argv: list[str]) -> int:
    return run(load(argv), stop_event())


def build(settings: SecretsSettings, registry: Registry, log: Logger) -> Agent:
    client = VaultClient(
        settings.vault_addr,
        settings.vault_namespace,
        settings.vault_cacert,
        cadata=settings.vault_ca_pem,
    )
    auth = Auth(client, settings.auth_path, settings.role, settings.token_file, registry)
    notifier = (
        Notifier(settings.reload, registry, log) if settings.reload and not settings.init else None
    )
    return Agent(settings, client, auth, registry, log, notifier)


def run(settings: SecretsSettings, stop: StopEvent) -> int:
    log = Logger("secrets", settings.log_level)
    registry = Registry("sidecar")
    agent = build(settings, registry, log)
    agent.prepare()
    if settings.init:
        agent.render_all(Deadline.after(settings.deadline), stop)
        _save(agent, settings, log)
        log.info("secrets rendered", count=len(settings.secrets))
        return 0

    def readiness() -> tuple[bool, str]:
        if agent.ready:
            return True, "ready"
        return False, "waiting for the first render of every secret"

    server = AgentServer(
        settings.agent_host, settings.agent_port, registry, readiness, stop.set
    ).start()
    agent.adopt(state.load(settings.state_dir))
    log.info("refresher started", secrets=[s.name for s in settings.secrets])
    try:
        while not stop.is_set():
            wait = agent.tick(stop)
            _save(agent, settings, log)
            stop.wait(min(wait, 30.0))
    finally:
        if settings.revoke_on_exit and agent.auth.token is not None:
            try:
                agent.auth.revoke()
                log.info("token revoked")
            except SidecarError as exc:
                log.warning("token revocation failed", error=str(exc))
        server.stop()
    return 0


def _save(agent: Agent, settings: SecretsSettings, log: Logger) -> None:
    try:
        state.save(settings.state_dir, agent.handoff())
    except SidecarError as exc:
        log.warning("could not leave the hand-off for the refresher", error=str(exc))
