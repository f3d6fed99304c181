"""Namespace labels for the webhook: ``sidecar.example.io/injection`` sets a namespace's default.

An AdmissionReview does not carry the namespace's labels, so every replica
keeps them in memory: one full listing first (readiness waits for it), then
kopf's watch events.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf

from injector.admission.serve import NamespaceCache
from injector.operator.kube import Kube, KubeError
from injector.operator.lease import wait_any

log = logging.getLogger("injector.operator.namespaces")


class NamespaceKeeper:
    def __init__(self, kube: Kube, cache: NamespaceCache) -> None:
        self.kube = kube
        self.cache = cache
        self.ready = False
        self.problem: str | None = "namespaces not listed yet"

    def _update(self, body: dict[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        name = metadata.get("name")
        if name:
            self.cache.update(str(name), dict(metadata.get("labels") or {}))

    async def initial_list(self, stop: asyncio.Event, retry: float = 2.0) -> bool:
        while not stop.is_set():
            try:
                listing = await self.kube.request("GET", "/api/v1/namespaces")
            except (KubeError, OSError) as exc:
                self.problem = f"namespaces: {exc}"
                log.warning("cannot list namespaces: %s", exc)
                await wait_any(retry, stop)
                continue
            for body in listing.get("items") or []:
                self._update(body)
            self.ready, self.problem = True, None
            return True
        return False

    def on_event(self, event: dict[str, Any]) -> None:
        body = event.get("object") or {}
        if event.get("type") == "DELETED":
            name = (body.get("metadata") or {}).get("name")
            if name:
                self.cache.remove(str(name))
        else:
            self._update(body)

    def register(self, registry: kopf.OperatorRegistry) -> None:
        keeper = self

        @kopf.on.event("", "v1", "namespaces", registry=registry, id="namespaces")
        async def namespace_event(event: kopf.RawEvent, **_: Any) -> None:
            keeper.on_event(cast(dict[str, Any], event))
