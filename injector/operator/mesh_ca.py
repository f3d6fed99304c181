"""The mesh roots in the cluster: one Secret, a trust ConfigMap per namespace, rotation.

Every replica, each round (``--mesh-check-interval``, and when leadership changes):

* reads Secret ``sidecar-mesh-ca`` (the trust state: roots with their keys)
  into the ``TrustView`` its certificate endpoint signs with;
* writes the roots its endpoint heard agents report (``AckLedger``) into its
  own ConfigMap ``sidecar-mesh-acks-<replica>`` (no two replicas write the
  same object).

The leader also:

* runs ``trust.plan`` (create, publish a next root, switch once every running
  meshed pod reported trusting it, retire) with the reports of all replicas
  against the live pods labelled ``sidecar.example.io/mtls``, and writes the
  Secret (replace with its ``resourceVersion``: a 409 re-reads next round);
  a rotation is requested by setting the Secret's annotation
  ``sidecar.example.io/rotate-root`` to a new value;
* publishes ConfigMap ``sidecar-mesh-trust`` in every namespace: ``roots.pem``,
  ``generation`` and ``signer-ca.pem`` (the CA of this endpoint's TLS);
* turns alarms into Warning Events on the Secret (root near expiry with no
  rotation, a switch without every report) and pods whose certificate was not
  renewed by 3/4 of its lifetime into Warning Events on the pod; every
  rotation step is a Normal Event.

An unreadable Secret is never overwritten (that would lose the roots' keys
and break every pod's TLS): the operator reports it and waits for a human.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from injector.mesh import trust
from injector.mesh.signer import MeshError
from injector.operator.certificates import CertificateKeeper
from injector.operator.events import EventRecorder
from injector.operator.identity_service import AckLedger, TrustView
from injector.operator.kube import Kube, KubeError, NotFound
from injector.operator.lease import LeaderElector, wait_any
from injector.operator.mesh_acks import AckStore
from injector.operator.mesh_options import MeshOptions

log = logging.getLogger("injector.operator.mesh")
SECRET = "sidecar-mesh-ca"  # noqa: S105 (a Secret's name)
STATE_KEY = "state.json"
TRUST_CONFIGMAP = "sidecar-mesh-trust"
ROTATE = "sidecar.example.io/rotate-root"
ROOT_NAME = "sidecar-mesh"
LABELS = {"app.kubernetes.io/name": "sidecar-injector", "app.kubernetes.io/component": "mesh"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MeshCA:
    def __init__(
        self,
        kube: Kube,
        leader: LeaderElector,
        certificates: CertificateKeeper,
        view: TrustView,
        ledger: AckLedger,
        options: MeshOptions,
        namespace: str,
        replica: str,
        excluded: frozenset[str],
        registry: CollectorRegistry,
    ) -> None:
        self.kube = kube
        self.leader = leader
        self.certificates = certificates
        self.view = view
        self.ledger = ledger
        self.options = options
        self.policy = options.rotation()
        self.namespace = namespace
        self.excluded = excluded
        self.problem: str | None = "mesh root not loaded yet"
        self.leadership = leader.listen()
        self.acks = AckStore(kube, namespace, replica, ledger, LABELS)
        self.events = EventRecorder(kube)
        self.root_expiry = Gauge(
            "sidecar_injector_mesh_root_expiry_timestamp_seconds",
            "When each mesh root expires, by state (active, next, retiring)",
            ("fingerprint", "state"),
            registry=registry,
        )
        self.generation = Gauge(
            "sidecar_injector_mesh_trust_generation",
            "Generation of the trust bundle",
            registry=registry,
        )
        self.pending = Gauge(
            "sidecar_injector_mesh_rotation_pending_pods",
            "Running meshed pods that did not report trusting the next root yet",
            registry=registry,
        )
        self.stale = Gauge(
            "sidecar_injector_mesh_stale_certificates",
            "Running meshed pods whose certificate was not renewed by 3/4 of its lifetime",
            registry=registry,
        )

    @property
    def ready(self) -> bool:
        return self.view.state is not None

    @property
    def secret_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{SECRET}"

    # -- one round --------------------------------------------------------

    async def reconcile(self) -> None:
        secret = await self.kube.get(self.secret_path)
        state = self._read(secret)
        if secret is not None and state is None:
            return
        if self.leader.is_leader:
            state = await self._lead(secret, state)
        if state is not None:
            self.view.state = state
            self.problem = None
            self._export(state)
        else:
            self.problem = f"waiting for the leader to create secret {self.namespace}/{SECRET}"
        await self.acks.flush()

    def _read(self, secret: dict[str, Any] | None) -> trust.TrustState | None:
        if secret is None:
            return None
        try:
            raw = base64.b64decode((secret.get("data") or {})[STATE_KEY])
            return trust.TrustState.from_json(raw)
        except (KeyError, ValueError, MeshError) as exc:
            self.problem = (
                f"secret {self.namespace}/{SECRET} is unreadable ({exc}); it is not overwritten "
                "(its roots' keys would be lost): restore it from a backup, or delete it to start "
                "a new mesh root (every pod then needs a new certificate)"
            )
            log.error("mesh: %s", self.problem)
            return None

    async def _lead(
        self, secret: dict[str, Any] | None, state: trust.TrustState | None
    ) -> trust.TrustState | None:
        request = str(((secret or {}).get("metadata") or {}).get("annotations", {}).get(ROTATE, ""))
        acks = None
        if state is not None and state.next is not None:
            acks = await self.acks.acks_for(state.next.fingerprint)
            self.pending.set(acks.missing_count)
        step = trust.plan(state, ROOT_NAME, _now(), self.policy, acks, request)
        for alarm in step.alarms:
            log.warning("mesh: %s", alarm)
            await self.events.record(self._secret_ref(), "Warning", "MeshRootAlarm", alarm)
        if step.changed:
            if not await self._write(step.state, secret):
                return state
            for reason in step.reasons:
                log.info("mesh: %s", reason)
                await self.events.record(self._secret_ref(), "Normal", "MeshRootRotation", reason)
        await self._publish(step.state)
        await self._warn_stale()
        return step.state

    async def _write(self, state: trust.TrustState, old: dict[str, Any] | None) -> bool:
        metadata: dict[str, Any] = {"name": SECRET, "namespace": self.namespace, "labels": LABELS}
        if old is not None:
            metadata = {**(old.get("metadata") or {}), "labels": LABELS}
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": metadata,
            "data": {STATE_KEY: base64.b64encode(state.to_json().encode()).decode()},
        }
        collection = f"/api/v1/namespaces/{self.namespace}/secrets"
        if await self.kube.save(collection, SECRET, body, exists=old is not None):
            return True
        log.info("mesh: secret %s changed meanwhile; re-reading", SECRET)
        return False

    def _export(self, state: trust.TrustState) -> None:
        self.root_expiry.clear()
        for record in state.roots:
            self.root_expiry.labels(record.fingerprint[:16], record.state).set(
                record.authority.not_after.timestamp()
            )
        self.generation.set(state.generation)

    # -- trust ConfigMaps -------------------------------------------------

    def _trust_data(self, state: trust.TrustState) -> dict[str, str]:
        ca = self.certificates.loaded.ca_bundle if self.certificates.loaded else b""
        return {
            "roots.pem": state.bundle_pem.decode(),
            "generation": str(state.generation),
            "signer-ca.pem": ca.decode(),
        }

    async def _publish(self, state: trust.TrustState) -> None:
        data = self._trust_data(state)
        if not data["signer-ca.pem"]:
            return
        namespaces = await self.kube.request("GET", "/api/v1/namespaces")
        existing = await self.kube.request(
            "GET", "/api/v1/configmaps", query={"fieldSelector": f"metadata.name={TRUST_CONFIGMAP}"}
        )
        current = {str(item["metadata"]["namespace"]): item for item in existing.get("items") or []}
        for item in namespaces.get("items") or []:
            name = str(item["metadata"]["name"])
            if name in self.excluded or (item.get("status") or {}).get("phase") == "Terminating":
                continue
            found = current.get(name)
            if found is not None and found.get("data") == data:
                continue
            metadata: dict[str, Any] = {
                "name": TRUST_CONFIGMAP,
                "namespace": name,
                "labels": LABELS,
            }
            if found is not None:
                metadata["resourceVersion"] = found["metadata"]["resourceVersion"]
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
            collection = f"/api/v1/namespaces/{name}/configmaps"
            try:
                saved = await self.kube.save(
                    collection, TRUST_CONFIGMAP, body, exists=found is not None
                )
            except NotFound:
                saved = False
            if not saved:
                continue  # changed or gone meanwhile: the next round settles it
            log.info("mesh: trust bundle generation %s published in %s", data["generation"], name)

    async def _warn_stale(self) -> None:
        lifetime = self.policy.leaf_lifetime.total_seconds()
        stale = await self.acks.stale(lifetime)
        self.stale.set(len(stale))
        for pod, issued in stale:
            meta = pod["metadata"]
            at = dt.datetime.fromtimestamp(issued, dt.UTC)
            message = (
                f"the proxy's mesh certificate was issued at {at:%Y-%m-%d %H:%M} UTC and expires "
                f"about {at + self.policy.leaf_lifetime:%Y-%m-%d %H:%M} UTC; its renewal keeps "
                "failing: see the sidecar-proxy container's log (mesh: certificate request failed)"
            )
            ref = {k: meta.get(k) for k in ("namespace", "name", "uid")}
            await self.events.record(
                {"kind": "Pod", **ref}, "Warning", "MeshCertificateNotRenewed", message
            )

    def _secret_ref(self) -> dict[str, Any]:
        return {"kind": "Secret", "namespace": self.namespace, "name": SECRET}

    # -- loop ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.leadership.clear()
            try:
                await self.reconcile()
            except (KubeError, OSError, MeshError) as exc:
                self.problem = f"mesh: {exc}"
                log.warning("mesh: %s", exc)
            await wait_any(self.options.interval, stop, self.leadership)
