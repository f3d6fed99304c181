"""The certificate loop: one Secret shared by all replicas, renewed by the leader.

Each round (every ``interval``, and at once when leadership changes):

- every replica reads the Secret and, if it holds a different serving
  certificate, loads it into the live TLS context (new handshakes use it,
  open connections finish on the old one);
- the leader also decides with ``rotation.ensure`` whether anything must be
  renewed. If so it first publishes the new CA bundle in the webhook
  configuration (so the API server trusts the new CA before any replica
  serves a certificate signed by it), then writes the Secret, replacing the
  version it read (a 409 means another writer won: the next round re-reads).
  Then, every round, it puts the Secret's bundle back into the caBundle if
  something (a GitOps sync) changed it.

Until a certificate from the Secret is loaded the webhook serves a throwaway
self-signed one so its probes answer, and reports not ready.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from typing import Any

from injector.admission import certs
from injector.admission.tls import ServingTLS, fingerprint
from injector.operator import rotation
from injector.operator.kube import Kube, KubeError
from injector.operator.lease import LeaderElector, wait_any
from injector.operator.webhookconfig import WebhookConfigPatcher

log = logging.getLogger("injector.operator.certs")


class CertificateKeeper:
    def __init__(
        self,
        kube: Kube,
        tls: ServingTLS,
        leader: LeaderElector,
        webhook: WebhookConfigPatcher,
        namespace: str,
        secret_name: str,
        dns_names: Sequence[str],
        ips: Sequence[str] = (),
        policy: rotation.RotationPolicy | None = None,
        interval: float = 30.0,
    ) -> None:
        self.kube = kube
        self.tls = tls
        self.leader = leader
        self.webhook = webhook
        self.namespace = namespace
        self.secret_name = secret_name
        self.dns_names = list(dns_names)
        self.ips = list(ips)
        self.policy = policy or rotation.RotationPolicy()
        self.interval = interval
        self.loaded: rotation.WebhookCerts | None = None  # from the Secret, being served
        self.problem: str | None = "certificates not loaded from the Secret yet"
        self.wake = asyncio.Event()
        self.leadership = leader.listen()

    @property
    def ready(self) -> bool:
        return self.loaded is not None

    @property
    def secret_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{self.secret_name}"

    def serve_bootstrap(self) -> None:
        """A throwaway certificate so the server can start before the Secret is read."""
        made = rotation.ensure(None, self.dns_names, self.ips, self.policy).certs
        self.tls.load(made.serving)

    def _read(self, secret: dict[str, Any] | None) -> rotation.WebhookCerts | None:
        if secret is None:
            return None
        try:
            return rotation.from_secret_data(
                secret.get("data"), f"secret {self.namespace}/{self.secret_name}"
            )
        except certs.CertificateError as exc:
            log.warning("%s", exc)
            return None

    def _secret_body(
        self, made: rotation.WebhookCerts, old: dict[str, Any] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": self.secret_name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/name": "sidecar-injector"},
            },
            "data": rotation.to_secret_data(made),
        }
        if old is not None:
            metadata = old.get("metadata") or {}
            body["metadata"] = {**metadata, **body["metadata"]}
            body["metadata"]["labels"] = {
                **(metadata.get("labels") or {}),
                "app.kubernetes.io/name": "sidecar-injector",
            }
            body["type"] = old.get("type", body["type"])
        return body

    async def _write(self, made: rotation.WebhookCerts, old: dict[str, Any] | None) -> bool:
        body = self._secret_body(made, old)
        collection = f"/api/v1/namespaces/{self.namespace}/secrets"
        if await self.kube.save(collection, self.secret_name, body, exists=old is not None):
            return True
        log.info("secret %s/%s changed meanwhile; re-reading", self.namespace, self.secret_name)
        return False

    async def reconcile(self) -> None:
        """One round (see the module docstring)."""
        secret = await self.kube.get(self.secret_path)
        current = self._read(secret)
        if self.leader.is_leader:
            decision = rotation.ensure(current, self.dns_names, self.ips, self.policy)
            if decision.changed:
                log.info(
                    "renewing the webhook certificates: %s",
                    "; ".join(decision.reasons),
                )
                new_ca = current is None or decision.certs.ca != current.ca
                if new_ca:
                    await self.webhook.ensure_ca_bundle(decision.certs.ca_bundle)
                if not await self._write(decision.certs, secret):
                    self.wake.set()
                    return
                current = decision.certs
            if current is not None:
                await self.webhook.ensure_ca_bundle(current.ca_bundle)
        if current is None:
            self.problem = (
                f"waiting for the leader to create secret {self.namespace}/{self.secret_name}"
            )
            return
        if self.tls.load(current.serving):
            log.info(
                "serving certificate %s (valid until %s)",
                fingerprint(current.serving.cert_pem),
                current.serving.not_after.isoformat(),
            )
        self.loaded = current
        self.problem = None

    def ca_bundle_b64(self) -> str | None:
        return base64.b64encode(self.loaded.ca_bundle).decode() if self.loaded else None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.wake.clear()
            self.leadership.clear()
            try:
                await self.reconcile()
            except (KubeError, OSError) as exc:
                self.problem = f"certificates: {exc}"
                log.warning("certificates: %s", exc)
            await wait_any(self.interval, stop, self.wake, self.leadership)
