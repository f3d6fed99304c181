"""``sidecar-injector serve --operator``: the control loops, in the webhook's event loop.

The CLI reads ``OperatorOptions`` once and hands ``hook(options)`` to
``injector.admission.serve.serve``, which awaits it as a task next to uvicorn
(so the admission shell never imports the operator). It:

- elects a leader among the replicas with a Lease (``lease``);
- keeps the serving certificate in a Secret, renews it (leader), loads it into
  the live TLS context (everyone) and keeps the webhook configuration's
  caBundle current (leader) (``certificates``, ``webhookconfig``);
- lists SidecarProfiles, then lets kopf watch them into the profile store that
  ``ctx.settings`` serves, and writes their status (leader)
  (``profiles``);
- lets kopf watch namespaces into ``ctx.namespaces`` (the injection label)
  (``namespaces``);
- adds readiness checks: certificates, profiles and namespaces loaded.

kopf runs standalone (no kopf peering): peering would pause every handler on
the non-leading replicas, but each replica needs the profile and namespace
watches to serve admissions. Only the writers are leader-elected.

kopf installs its own SIGINT/SIGTERM handlers when it starts; they are put
back to uvicorn's at once, so a signal stops uvicorn gracefully and uvicorn's
exit cancels this task, which stops kopf and releases the Lease. If the
operator fails for good, the process is sent SIGTERM (not ready, then exit),
so the kubelet restarts it instead of leaving a webhook with stale profiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any, cast

import kopf

from injector.admission.serve import OperatorHook, ServeContext
from injector.core.profiles import ProfileStore
from injector.core.settings import parse_version
from injector.errors import ConfigError
from injector.operator.certificates import CertificateKeeper
from injector.operator.kube import Kube, KubeAccess, KubeError
from injector.operator.lease import LeaderElector
from injector.operator.mesh import Mesh
from injector.operator.namespaces import NamespaceKeeper
from injector.operator.options import OperatorOptions
from injector.operator.profiles import ProfileKeeper
from injector.operator.webhookconfig import WebhookConfigPatcher

log = logging.getLogger("injector.operator.controller")


def register_login(registry: kopf.OperatorRegistry, access: KubeAccess) -> None:
    """kopf uses the same credentials as our own requests (re-read after a 401)."""

    @kopf.on.login(registry=registry, id="sidecar-injector")
    def login(**_: Any) -> kopf.ConnectionInfo:
        token = access.current_token()
        return kopf.ConnectionInfo(
            server=access.server,
            ca_path=access.ca_file,
            insecure=access.insecure,
            scheme="Bearer" if token else None,
            token=token,
            certificate_path=access.cert_file,
            private_key_path=access.key_file,
        )


class Operator:
    """Everything ``run`` starts, built from a ``ServeContext`` and options."""

    def __init__(self, ctx: ServeContext, options: OperatorOptions, kube: Kube) -> None:
        self.ctx = ctx
        self.options = options
        self.kube = kube
        self.leader = LeaderElector(
            kube, options.namespace, options.lease, options.identity, options.timing
        )
        self.webhook = WebhookConfigPatcher(kube, options.webhook_configuration)
        self.certificates = CertificateKeeper(
            kube,
            ctx.tls,
            self.leader,
            self.webhook,
            options.namespace,
            options.secret,
            options.dns_names(),
            options.cert_ips,
            options.policy,
            options.cert_interval,
        )
        self.mesh = None
        if options.mesh.enabled:
            self.mesh = Mesh(
                ctx,
                options.mesh,
                kube,
                self.leader,
                self.certificates,
                options.namespace,
                options.identity,
            )
        self.store = ProfileStore(ctx.settings.get())
        self.profiles = ProfileKeeper(kube, self.store, self.leader)
        self.namespaces = NamespaceKeeper(kube, ctx.namespaces)
        self.stop = asyncio.Event()
        self.registry = kopf.OperatorRegistry()
        register_login(self.registry, kube.access)
        self.profiles.register(self.registry)
        self.namespaces.register(self.registry)
        self.profiles.on_change = self._publish_settings
        ctx.readiness.add("certificates", self._certificates_ready)
        ctx.readiness.add("profiles", self._profiles_ready)
        ctx.readiness.add("namespaces", self._namespaces_ready)

    def _publish_settings(self) -> None:
        self.ctx.settings.set(self.store.settings)

    def _certificates_ready(self) -> tuple[bool, str]:
        return self.certificates.ready, self.certificates.problem or "loaded"

    def _profiles_ready(self) -> tuple[bool, str]:
        return self.profiles.ready, self.profiles.problem or "loaded"

    def _namespaces_ready(self) -> tuple[bool, str]:
        return self.namespaces.ready, self.namespaces.problem or "loaded"

    async def discover_cluster_version(self) -> None:
        base = self.store.base
        if base.cluster_version is not None:
            return
        try:
            version = await self.kube.request("GET", "/version")
            found = parse_version(f"{version.get('major')}.{version.get('minor')}")
        except (KubeError, ConfigError) as exc:
            log.warning("cannot read the API server version (%s); native sidecars off", exc)
            return
        self.store.set_base(base.replace(cluster_version=found))
        self._publish_settings()
        log.info("API server version %d.%d", *found)

    def kopf_settings(self) -> kopf.OperatorSettings:
        settings = kopf.OperatorSettings()
        settings.posting.enabled = False  # status carries the outcome; no Events RBAC
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 10
        return settings

    async def run(self) -> None:
        self.certificates.serve_bootstrap()
        background = [
            asyncio.create_task(self.leader.run(self.stop), name="lease"),
            asyncio.create_task(self.certificates.run(self.stop), name="certificates"),
            asyncio.create_task(self.profiles.run_status(self.stop), name="profile status"),
        ]
        if self.mesh is not None:
            background += self.mesh.start(self.stop)
        try:
            await self.discover_cluster_version()
            await self.namespaces.initial_list(self.stop)
            if not await self.profiles.initial_list(self.stop):
                return
            self._publish_settings()
            if self.mesh is not None and await self.mesh.register(self.registry):
                # issuance: podCertificate profiles get the kubelet's volume from now on
                self.store.set_base(self.store.base.replace(pod_certificates=True))
                self._publish_settings()
            await self._run_kopf()
        finally:
            log.debug("operator stopping: background loops, then the Lease")
            self.stop.set()
            await asyncio.gather(*background, return_exceptions=True)

    async def _run_kopf(self) -> None:
        existing = asyncio.all_tasks()
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        tasks = await kopf.spawn_tasks(
            registry=self.registry,
            settings=self.kopf_settings(),
            clusterwide=True,
            standalone=True,
            # kopf would derive one from getpass.getuser(), which fails for a
            # UID without a passwd entry (the manifests run as 65532).
            identity=cast(Any, self.options.identity),  # kopf's NewType, not exported
            stop_flag=self.stop,
        )
        loop = asyncio.get_running_loop()
        for sig, handler in saved.items():  # give the signals back to uvicorn
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)
        await kopf.run_tasks(tasks, ignored=existing)


def hook(options: OperatorOptions) -> OperatorHook:
    """What the CLI hands to ``injector.admission.serve.serve`` for ``--operator``."""

    async def start(ctx: ServeContext) -> None:
        await run(ctx, options)

    return start


async def run(ctx: ServeContext, options: OperatorOptions) -> None:
    """The control loops until uvicorn stops (then cancelled) or they fail for good."""
    kube = Kube(KubeAccess.discover())
    operator = Operator(ctx, options, kube)
    log.info(
        "operator starting: namespace %s, secret %s, webhook configuration %s, identity %s",
        options.namespace,
        options.secret,
        options.webhook_configuration,
        options.identity,
    )
    try:
        await operator.run()
    except asyncio.CancelledError:
        raise  # uvicorn is stopping: kopf stopped, the Lease was released
    except Exception as exc:
        log.exception("the operator failed: %s; stopping the injector", exc)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    # kopf only returns by itself when one of its root tasks failed.
    log.error("the operator stopped unexpectedly; stopping the injector")
    os.kill(os.getpid(), signal.SIGTERM)
