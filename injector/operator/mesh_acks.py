"""What agents reported, across replicas: which roots each pod trusts, when it
last got a certificate.

Each replica's certificate endpoint keeps its reports in memory
(``AckLedger``); ``AckStore.flush`` writes them, when they changed, into the
replica's own ConfigMap ``sidecar-mesh-acks-<replica>`` (so no two replicas
write one object) as compact ``[uid, "fp16,fp16", heard_at, issued_at]``
rows: about 10,000 pods per replica fit in a ConfigMap. The leader merges
every replica's rows (newest per pod UID, ``reports``) and compares them with
the running pods labelled ``sidecar.example.io/mtls`` (``acks_for``,
``stale``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from injector.mesh import trust
from injector.operator.identity_service import AckLedger, Report
from injector.operator.kube import Kube, NotFound

ACKS_PREFIX = "sidecar-mesh-acks-"
ACKS_LABEL = "sidecar.example.io/mesh-acks"
POD_LABEL = "sidecar.example.io/mtls"
FINGERPRINT = 16  # hex characters kept per root


@dataclass(frozen=True)
class Heard:
    """What some replica last heard from one pod."""

    roots: tuple[str, ...]  # fingerprint prefixes
    at: int
    issued: int


def parse_acks(text: object) -> dict[str, Heard]:
    """An acks ConfigMap's rows; junk rows are skipped."""
    try:
        entries = json.loads(str(text or "[]"))
    except ValueError:
        return {}
    found = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, list) and len(entry) == 4:
            uid, roots, at, issued = entry
            if isinstance(uid, str) and isinstance(roots, str):
                with_roots = tuple(roots.split(",")) if roots else ()
                try:
                    found[uid] = Heard(with_roots, int(at), int(issued))
                except (TypeError, ValueError):
                    continue
    return found


def _name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


class AckStore:
    def __init__(
        self, kube: Kube, namespace: str, replica: str, ledger: AckLedger, labels: dict[str, str]
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = ACKS_PREFIX + replica[:40].lower()
        self.ledger = ledger
        self.labels = {**labels, ACKS_LABEL: "true"}
        self._flushed: dict[str, Report] = {}

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps"

    async def flush(self) -> None:
        snapshot = dict(self.ledger.reports)
        if snapshot == self._flushed:
            return
        rows = [
            [uid, ",".join(sorted(f[:FINGERPRINT] for f in r.roots)), int(r.at), int(r.issued)]
            for uid, r in snapshot.items()
        ]
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels},
            "data": {"acks.json": json.dumps(rows, separators=(",", ":"))},
        }
        try:
            await self.kube.request("PUT", f"{self.path}/{self.name}", body)
        except NotFound:
            await self.kube.request("POST", self.path, body)
        self._flushed = snapshot

    async def reports(self) -> dict[str, Heard]:
        listing = await self.kube.request(
            "GET", self.path, query={"labelSelector": f"{ACKS_LABEL}=true"}
        )
        merged: dict[str, Heard] = {}
        for item in listing.get("items") or []:
            for uid, heard in parse_acks((item.get("data") or {}).get("acks.json")).items():
                if uid not in merged or heard.at >= merged[uid].at:
                    merged[uid] = heard
        return merged

    async def running_pods(self) -> list[dict[str, Any]]:
        listing = await self.kube.request(
            "GET",
            "/api/v1/pods",
            query={"labelSelector": POD_LABEL, "fieldSelector": "status.phase=Running"},
        )
        return [
            p
            for p in listing.get("items") or []
            if not (p.get("metadata") or {}).get("deletionTimestamp")
        ]

    async def acks_for(self, fingerprint: str) -> trust.Acks:
        """How many running meshed pods reported trusting the root ``fingerprint``."""
        wanted = fingerprint[:FINGERPRINT]
        reports = await self.reports()
        pods = await self.running_pods()
        missing = sorted(
            _name(pod)
            for pod in pods
            if wanted not in getattr(reports.get(str(pod["metadata"].get("uid"))), "roots", ())
        )
        return trust.Acks(len(pods), tuple(missing[:5]), len(missing))

    async def stale(self, lifetime: float) -> list[tuple[dict[str, Any], int]]:
        """Running meshed pods whose last certificate is older than 3/4 of ``lifetime``."""
        reports = await self.reports()
        found = []
        for pod in await self.running_pods():
            heard = reports.get(str(pod["metadata"].get("uid")))
            if heard is not None and heard.issued and time.time() - heard.issued >= 0.75 * lifetime:
                found.append((pod, heard.issued))
        return found
