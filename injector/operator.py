"""``sidecar-injector serve --operator``: the control loops, in the webhook's event loop.

``run(ctx)`` is awaited as a task next to uvicorn (``injector.serve``). It:

- elects a leader among the replicas with a Lease (``operator_lease``);
- keeps the serving certificate in a Secret, renews it (leader), loads it into
  the live TLS context (everyone) and keeps the webhook configuration's
  caBundle current (leader) (``operator_certs``);
- lists SidecarProfiles, then lets kopf watch them into the profile store that
  ``ctx.settings`` serves, and writes their status (leader)
  (``operator_profiles``);
- lets kopf watch namespaces into ``ctx.namespaces`` (the injection label);
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
import secrets
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from injector import certs
from injector.errors import ConfigError
from injector.operator_certs import CertificateKeeper
from injector.operator_kube import Kube, KubeAccess, KubeError
from injector.operator_lease import LeaderElector, LeaseTiming
from injector.operator_namespaces import NamespaceKeeper
from injector.operator_profiles import ProfileKeeper
from injector.operator_webhookconfig import WebhookConfigPatcher
from injector.profiles import ProfileStore
from injector.serve import ServeContext
from injector.settings import parse_version
from sidecar.units import parse_duration

log = logging.getLogger("injector.operator")
DEFAULT_NAME = "sidecar-injector"
SECRET_NAME = "sidecar-injector-tls"  # noqa: S105 (a Secret's name, not a password)


@dataclass(frozen=True)
class OperatorOptions:
    namespace: str = DEFAULT_NAME
    service: str = DEFAULT_NAME
    secret: str = SECRET_NAME
    webhook_configuration: str = DEFAULT_NAME
    lease: str = DEFAULT_NAME
    identity: str = ""
    cert_dns: tuple[str, ...] = ()
    cert_ips: tuple[str, ...] = ()
    policy: certs.RotationPolicy = field(default_factory=certs.RotationPolicy)
    cert_interval: float = 30.0
    timing: LeaseTiming = field(default_factory=LeaseTiming)

    @classmethod
    def from_mapping(
        cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> OperatorOptions:
        """``ctx.options`` (command-line flags, ``None`` = unset) over the environment.

        Keys: injector_namespace, service, secret, webhook_configuration,
        lease, dns_name, cert_ips, ca_validity, cert_validity,
        renew_fraction, cert_interval. The namespace defaults to ``POD_NAMESPACE``, the
        in-cluster namespace, then ``sidecar-injector``; the identity to
        ``POD_NAME`` (else the host name) plus a random suffix.
        """
        env = os.environ if environ is None else environ

        def get(key: str, default: Any) -> Any:
            value = options.get(key)
            return default if value is None else value

        namespace = get("injector_namespace", env.get("POD_NAMESPACE") or _in_cluster_namespace())
        suffix = secrets.token_hex(3)
        identity = f"{env.get('POD_NAME') or socket.gethostname()}-{suffix}"
        try:
            policy = certs.RotationPolicy(
                ca_validity=_duration(get("ca_validity", None), certs.CA_VALIDITY),
                serving_validity=_duration(get("cert_validity", None), certs.SERVING_VALIDITY),
                renew_fraction=float(get("renew_fraction", certs.RENEW_FRACTION)),
            )
        except (certs.CertificateError, ValueError) as exc:
            raise ConfigError(f"--operator certificate policy: {exc}") from None
        interval = get("cert_interval", None)
        return cls(
            namespace=namespace,
            service=get("service", DEFAULT_NAME),
            secret=get("secret", SECRET_NAME),
            webhook_configuration=get("webhook_configuration", DEFAULT_NAME),
            lease=get("lease", DEFAULT_NAME),
            identity=identity,
            cert_dns=tuple(get("dns_name", ())),
            cert_ips=tuple(get("cert_ips", ())),
            policy=policy,
            cert_interval=_duration(interval, None).total_seconds() if interval else 30.0,
        )

    def dns_names(self) -> list[str]:
        names = certs.service_dns_names(self.service, self.namespace)
        return names + [name for name in self.cert_dns if name not in names]


def _duration(text: Any, default: Any) -> Any:
    import datetime as dt  # noqa: PLC0415

    if text is None:
        return default
    if isinstance(text, dt.timedelta):
        return text
    try:
        return dt.timedelta(seconds=parse_duration(str(text)))
    except ValueError as exc:
        raise ConfigError(f"--operator: {exc}") from None


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


def _in_cluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
            return handle.read().strip() or DEFAULT_NAME
    except OSError:
        return DEFAULT_NAME


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
        try:
            await self.discover_cluster_version()
            await self.namespaces.initial_list(self.stop)
            if not await self.profiles.initial_list(self.stop):
                return
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
            stop_flag=self.stop,
        )
        loop = asyncio.get_running_loop()
        for sig, handler in saved.items():  # give the signals back to uvicorn
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)
        await kopf.run_tasks(tasks, ignored=existing)


async def run(ctx: ServeContext) -> None:
    """The ``--operator`` hook (see ``injector.serve``)."""
    options = OperatorOptions.from_mapping(ctx.options)
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
