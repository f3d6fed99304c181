"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go does it.

Every replica serves admissions and watches profiles; only the leader writes
(the certificate Secret, the webhook's caBundle, profile status). A replica
becomes leader when the Lease is free, released, or has not been renewed for
``lease_duration`` as measured on this replica's own clock (the time it last
saw the record change, not the ``renewTime`` written by another machine, so
clock skew between nodes does not matter). The leader renews every
``retry_period`` and steps down if it could not renew for ``renew_deadline``.
Updates carry ``resourceVersion``, so two candidates cannot both win a round.
On shutdown the leader releases the Lease so another replica takes over at
once.

Writes stay safe even when two replicas briefly both believe they lead: the
Secret is replaced with optimistic concurrency and the caBundle is always
derived from what the Secret holds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from injector.operator.kube import Conflict, Kube, KubeError

log = logging.getLogger("injector.operator.lease")


@dataclass(frozen=True)
class LeaseTiming:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


async def wait_any(timeout: float, *events: asyncio.Event) -> None:
    """Until one of ``events`` is set or ``timeout`` passes.

    Built on ``asyncio.wait``, which, unlike ``wait_for``, does not raise if
    the waiter task is cancelled from outside (kopf cancels every task created
    after it started when it stops).
    """
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _micro_time(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self.clock = clock
        self.is_leader = False
        self._listeners: list[asyncio.Event] = []
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def listen(self) -> asyncio.Event:
        """An event set on every gain or loss of leadership (the listener clears it)."""
        event = asyncio.Event()
        self._listeners.append(event)
        return event

    def _set_leader(self, value: bool) -> None:
        if value != self.is_leader:
            self.is_leader = value
            for event in self._listeners:
                event.set()
            log.info(
                "%s leadership of lease %s/%s",
                "acquired" if value else "lost",
                self.namespace,
                self.name,
                extra={"identity": self.identity},
            )

    def _spec(self, lease: dict[str, Any] | None, now: dt.datetime) -> dict[str, Any]:
        old = (lease or {}).get("spec") or {}
        transitions = int(old.get("leaseTransitions") or 0)
        acquire = old.get("acquireTime")
        if old.get("holderIdentity") != self.identity:
            transitions += 1 if old.get("holderIdentity") else 0
            acquire = _micro_time(now)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timing.lease_duration)),
            "acquireTime": acquire,
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One round: True if this replica holds the Lease afterwards."""
        now = dt.datetime.now(dt.UTC)
        lease = await self.kube.get(self.path)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, now),
            }
            try:
                await self.kube.request(
                    "POST", f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases", body
                )
            except Conflict:
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
        expired = self._observed_at + duration < self.clock()
        if holder and holder != self.identity and not expired:
            return False
        lease["spec"] = self._spec(lease, now)
        try:
            await self.kube.request("PUT", self.path, lease)
        except Conflict:
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign and renew until ``stop`` is set, then release if leading."""
        try:
            while not stop.is_set():
                try:
                    held = await self.try_acquire_or_renew()
                except KubeError as exc:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                    held = False
                now = self.clock()
                if held:
                    self._last_renew = now
                    self._set_leader(True)
                elif not self.is_leader or now - self._last_renew > self.timing.renew_deadline:
                    self._set_leader(False)
                await wait_any(self.timing.retry_period, stop)
        finally:
            await self.release()

    async def release(self) -> None:
        """Give the Lease up (holder cleared, 1s duration) if this replica holds it."""
        if not self.is_leader:
            return
        self._set_leader(False)
        try:
            lease = await self.kube.get(self.path)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "renewTime": _micro_time(dt.datetime.now(dt.UTC)),
            }
            await self.kube.request("PUT", self.path, lease)
            log.info("released lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.warning("lease %s/%s: could not release it: %s", self.namespace, self.name, exc)
