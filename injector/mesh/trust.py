"""Mesh roots over time: the rotation plan, without an outage. Pure, no I/O.

A root is in one of three states:

* ``active``: signs every new leaf; trusted;
* ``next``: published in the trust bundle, not signing yet;
* ``retiring``: no longer signs, still trusted until every leaf it signed has
  expired (``retire_at`` = the switch + one leaf lifetime + a margin).

``plan`` moves the state forward, one step per reason:

1. no state yet: a new active root;
2. retiring roots past ``retire_at`` and expired roots leave the bundle;
3. the active root is due (less than ``rotate_fraction`` of its life left) or
   a rotation was requested: a ``next`` root is published, so agents trust it
   before any leaf is signed by it;
4. every agent that must trust ``next`` reported its fingerprint (``Acks``),
   or ``ack_timeout`` passed, or the active root is about to be unable to sign
   a full-lifetime leaf: ``next`` becomes active and the old root retires.

Alarms are returned (never raised) for roots close to expiry that no rotation
covers yet, and for a switch that happened without every agent's report.
``generation`` grows whenever the set of trusted roots changes; agents use it
to tell the newer of two bundles apart.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from injector.mesh.signer import Authority, MeshError, new_root

ACTIVE, NEXT, RETIRING = "active", "next", "retiring"
STATES = (ACTIVE, NEXT, RETIRING)
RETIRE_MARGIN = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class RotationPolicy:
    root_lifetime: dt.timedelta = dt.timedelta(days=365)
    rotate_fraction: float = 1 / 3
    leaf_lifetime: dt.timedelta = dt.timedelta(hours=24)
    ack_timeout: dt.timedelta = dt.timedelta(hours=24)
    alarm_before: dt.timedelta = dt.timedelta(days=30)

    def __post_init__(self) -> None:
        if not 0 < self.rotate_fraction < 1:
            raise MeshError(f"root rotate fraction {self.rotate_fraction}: expected 0 to 1")
        if self.root_lifetime < self.leaf_lifetime * 4:
            raise MeshError(
                f"root lifetime {self.root_lifetime} is shorter than four leaf lifetimes "
                f"({self.leaf_lifetime}); a rotation needs at least that much overlap"
            )


@dataclass(frozen=True)
class RootRecord:
    authority: Authority
    state: str
    since: dt.datetime
    retire_at: dt.datetime | None = None

    @property
    def fingerprint(self) -> str:
        return self.authority.fingerprint


@dataclass(frozen=True)
class Acks:
    """How many of the agents that must trust a root reported it, and a few that did not."""

    expected: int
    missing: tuple[str, ...] = ()  # up to a handful of pod names, for the alarm
    missing_count: int = 0

    @property
    def complete(self) -> bool:
        return self.missing_count == 0


@dataclass(frozen=True)
class TrustState:
    roots: tuple[RootRecord, ...]
    generation: int = 1
    handled_request: str = ""

    def _one(self, state: str) -> RootRecord | None:
        return next((r for r in self.roots if r.state == state), None)

    @property
    def active(self) -> RootRecord:
        record = self._one(ACTIVE)
        if record is None:
            raise MeshError("mesh trust state has no active root; the operator recreates it")
        return record

    @property
    def next(self) -> RootRecord | None:
        return self._one(NEXT)

    @property
    def bundle_pem(self) -> bytes:
        """Active first, then next, then retiring."""
        order = sorted(self.roots, key=lambda r: STATES.index(r.state))
        return b"".join(r.authority.cert_pem for r in order)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(r.fingerprint for r in self.roots)

    def to_json(self) -> str:
        return json.dumps(
            {
                "generation": self.generation,
                "handledRequest": self.handled_request,
                "roots": [
                    {
                        "state": r.state,
                        "since": r.since.isoformat(),
                        "retireAt": r.retire_at.isoformat() if r.retire_at else None,
                        "certificate": r.authority.cert_pem.decode(),
                        "key": r.authority.key_pem.decode(),
                    }
                    for r in self.roots
                ],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> TrustState:
        try:
            data = json.loads(text)
            roots = tuple(_record(item) for item in data["roots"])
            state = cls(roots, int(data["generation"]), str(data.get("handledRequest") or ""))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MeshError(f"mesh trust state is unreadable ({exc})") from None
        if sum(r.state == ACTIVE for r in roots) != 1 or sum(r.state == NEXT for r in roots) > 1:
            raise MeshError("mesh trust state must have one active root and at most one next")
        return state


def _record(item: Mapping[str, Any]) -> RootRecord:
    state = str(item["state"])
    if state not in STATES:
        raise ValueError(f"root state {state!r} is not one of {', '.join(STATES)}")
    retire = item.get("retireAt")
    return RootRecord(
        Authority(str(item["certificate"]).encode(), str(item["key"]).encode()),
        state,
        dt.datetime.fromisoformat(str(item["since"])),
        dt.datetime.fromisoformat(str(retire)) if retire else None,
    )


@dataclass(frozen=True)
class Plan:
    state: TrustState
    reasons: tuple[str, ...] = ()
    alarms: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.reasons)


def _short(record: RootRecord) -> str:
    return record.fingerprint[:16]


def plan(
    current: TrustState | None,
    trust_domain: str,
    now: dt.datetime,
    policy: RotationPolicy,
    acks: Acks | None = None,
    request: str = "",
) -> Plan:
    """The next trust state (see the module docstring). ``acks`` is about
    ``current.next``; ``request`` a rotation request token (a new value rotates)."""
    if current is None:
        root = new_root(trust_domain, policy.root_lifetime, now)
        state = TrustState((RootRecord(root, ACTIVE, now),), 1, request)
        return Plan(state, (f"created mesh root {root.fingerprint[:16]}",))
    reasons: list[str] = []
    alarms: list[str] = []
    state = _drop_old(current, now, reasons)
    active = state.active
    due = active.authority.not_after - now < policy.root_lifetime * policy.rotate_fraction
    asked = bool(request) and request != state.handled_request
    if state.next is None and (due or asked):
        root = new_root(trust_domain, policy.root_lifetime, now)
        why = "rotation requested" if asked else f"root {_short(active)} is due"
        reasons.append(f"published next root {root.fingerprint[:16]} ({why})")
        state = replace(
            state,
            roots=(*state.roots, RootRecord(root, NEXT, now)),
            generation=state.generation + 1,
            handled_request=request if asked else state.handled_request,
        )
    elif asked:
        state = replace(state, handled_request=request)
    if state.next is not None:
        state = _maybe_switch(state, now, policy, acks, reasons, alarms)
    alarms += _expiry_alarms(state, now, policy)
    return Plan(state, tuple(reasons), tuple(alarms))


def _drop_old(state: TrustState, now: dt.datetime, reasons: list[str]) -> TrustState:
    kept = []
    for record in state.roots:
        if record.state == RETIRING and record.retire_at is not None and record.retire_at <= now:
            reasons.append(f"retired root {_short(record)}")
        elif record.state != ACTIVE and record.authority.not_after <= now:
            reasons.append(f"dropped expired root {_short(record)}")
        else:
            kept.append(record)
    if len(kept) == len(state.roots):
        return state
    return replace(state, roots=tuple(kept), generation=state.generation + 1)


def _maybe_switch(
    state: TrustState,
    now: dt.datetime,
    policy: RotationPolicy,
    acks: Acks | None,
    reasons: list[str],
    alarms: list[str],
) -> TrustState:
    upcoming = state.next
    assert upcoming is not None
    active = state.active
    waited = now - upcoming.since
    running_out = active.authority.not_after - now <= policy.leaf_lifetime * 2
    if acks is not None and acks.complete:
        why = f"all {acks.expected} agents trust it"
    elif waited >= policy.ack_timeout or running_out:
        pending = acks.missing_count if acks is not None else "an unknown number of"
        examples = ", ".join(acks.missing) if acks is not None and acks.missing else "unknown"
        cause = "the active root is about to expire" if running_out else f"waited {waited}"
        why = f"{cause}; {pending} agents never reported it"
        alarms.append(
            f"switched to root {_short(upcoming)} ({cause}) although {pending} agents did not "
            f"report trusting it (e.g. {examples}): their peers' new certificates may be refused "
            "until they read the trust bundle ConfigMap; check those pods' proxy logs"
        )
    else:
        return state
    retire_at = now + policy.leaf_lifetime + RETIRE_MARGIN
    roots = []
    for record in state.roots:
        if record is upcoming:
            roots.append(replace(record, state=ACTIVE, since=now))
        elif record is active:
            roots.append(replace(record, state=RETIRING, since=now, retire_at=retire_at))
        else:
            roots.append(record)
    reasons.append(f"root {_short(upcoming)} now signs ({why}); {_short(active)} retires")
    return replace(state, roots=tuple(roots))


def _expiry_alarms(state: TrustState, now: dt.datetime, policy: RotationPolicy) -> list[str]:
    alarms = []
    active = state.active
    left = active.authority.not_after - now
    if state.next is None and left < policy.alarm_before:
        alarms.append(
            f"mesh root {_short(active)} expires at {active.authority.not_after:%Y-%m-%d %H:%M} "
            f"UTC ({left.days} days) and no rotation has started; check the operator's log, or "
            "request one with the rotate-root annotation on the mesh CA Secret"
        )
    return alarms
