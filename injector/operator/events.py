"""Kubernetes Events from the operator (core/v1), for what a user must see.

``EventRecorder.record(ref, "Warning", reason, message)`` posts one Event on
the object ``ref`` names (kind, namespace, name, optional uid). The same
Warning is posted at most once an hour (alarms are re-evaluated every round);
Normal events are posted each time. A failure to post is logged with the
message, never raised: the event is information, not control flow.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from typing import Any

from injector.operator.kube import Kube, KubeError

log = logging.getLogger("injector.operator.events")
REPEAT = 3600.0


class EventRecorder:
    def __init__(self, kube: Kube, component: str = "sidecar-injector") -> None:
        self.kube = kube
        self.component = component
        self._posted: dict[str, float] = {}

    async def record(self, ref: dict[str, Any], kind: str, reason: str, message: str) -> None:
        namespace = str(ref.get("namespace") or "default")
        key = f"{namespace}/{ref.get('name')}/{reason}/{message}"
        now = time.monotonic()
        if kind == "Warning" and now - self._posted.get(key, -REPEAT) < REPEAT:
            return
        self._posted[key] = now
        if len(self._posted) > 10_000:
            self._posted = {k: v for k, v in self._posted.items() if now - v < REPEAT}
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{ref.get('name')}.{secrets.token_hex(8)}",
                "namespace": namespace,
            },
            "involvedObject": {"apiVersion": "v1", **ref},
            "reason": reason,
            "message": message[:1000],
            "type": kind,
            "source": {"component": self.component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.kube.request("POST", f"/api/v1/namespaces/{namespace}/events", body)
        except KubeError as exc:
            log.warning("cannot record event %s on %s (%s): %s", reason, key, exc, message)
