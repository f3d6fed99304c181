"""SidecarProfiles: kopf watches them into the ``ProfileStore``; the leader writes status.

All replicas keep the store current (each serves admissions from it). The
first full listing is made before kopf starts, so readiness can say "profiles
loaded" (kopf does not report the end of its initial listing); kopf's watch
events then update the store, so a change applies to the next admission. Only
the leader patches ``status`` (merge patch on the status subresource), and only
where it differs from what the store computes, so the status writes of one
replica do not fight another's and each write's own watch event settles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import kopf

from injector.core.profiles import GROUP, PLURAL, VERSION, ProfileStore
from injector.operator.kube import MERGE_PATCH, Kube, KubeError, NotFound
from injector.operator.lease import LeaderElector, wait_any

log = logging.getLogger("injector.operator.profiles")
COLLECTION = f"/apis/{GROUP}/{VERSION}/{PLURAL}"


class ProfileKeeper:
    def __init__(self, kube: Kube, store: ProfileStore, leader: LeaderElector) -> None:
        self.kube = kube
        self.store = store
        self.leader = leader
        self.dirty = asyncio.Event()
        self.leadership = leader.listen()
        self.problem: str | None = "SidecarProfiles not listed yet"
        self.on_change: Callable[[], None] = lambda: None  # publishes store.settings

    @property
    def ready(self) -> bool:
        return self.store.loaded

    async def initial_list(self, stop: asyncio.Event, retry: float = 2.0) -> bool:
        """List every SidecarProfile into the store; retry until it works or ``stop``."""
        while not stop.is_set():
            try:
                listing = await self.kube.request("GET", COLLECTION)
            except NotFound:
                log.warning(
                    "the SidecarProfile CRD (%s.%s) is not installed: serving the built-in "
                    "and --config profiles; profiles are picked up once it is applied",
                    PLURAL,
                    GROUP,
                )
                listing = {"items": []}
            except (KubeError, OSError) as exc:
                self.problem = f"SidecarProfiles: {exc}"
                log.warning("cannot list SidecarProfiles: %s", exc)
                await wait_any(retry, stop)
                continue
            self.store.replace_all(list(listing.get("items") or []))
            self.on_change()
            self.problem = None
            self.dirty.set()
            log.info(
                "loaded %d SidecarProfiles; default profile %s",
                len(self.store.objects),
                self.store.settings.default_profile,
            )
            return True
        return False

    def on_event(self, event: dict[str, Any]) -> None:
        """A kopf watch event (type None during kopf's own initial listing)."""
        body = event.get("object") or {}
        name = str((body.get("metadata") or {}).get("name", ""))
        if not name:
            return
        if event.get("type") == "DELETED":
            changed = self.store.remove(name)
        else:
            changed = self.store.apply(body)
        if changed:
            self.on_change()
            log.info(
                "SidecarProfile %s %s; default profile %s",
                name,
                "deleted" if event.get("type") == "DELETED" else "changed",
                self.store.settings.default_profile,
            )
        self.dirty.set()

    def register(self, registry: kopf.OperatorRegistry) -> None:
        keeper = self

        @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="sidecarprofiles")
        async def sidecarprofile_event(event: kopf.RawEvent, **_: Any) -> None:
            keeper.on_event(cast(dict[str, Any], event))

    async def write_statuses(self) -> None:
        for name, status in self.store.stale_statuses().items():
            if not self.leader.is_leader:
                return
            try:
                await self.kube.request(
                    "PATCH", f"{COLLECTION}/{name}/status", {"status": status}, MERGE_PATCH
                )
            except NotFound:
                continue  # deleted meanwhile; its DELETED event follows
            self.store.mark_status(name, status)
            log.info("SidecarProfile %s status: %s", name, status["message"])

    async def run_status(self, stop: asyncio.Event, interval: float = 60.0) -> None:
        """Leader only: bring every profile's status up to date after each change."""
        while not stop.is_set():
            self.dirty.clear()
            self.leadership.clear()
            if self.leader.is_leader and self.store.loaded:
                try:
                    await self.write_statuses()
                except (KubeError, OSError) as exc:
                    log.warning("SidecarProfile status: %s", exc)
                    await wait_any(2.0, stop)
                    self.dirty.set()
            await wait_any(interval, stop, self.dirty, self.leadership)
