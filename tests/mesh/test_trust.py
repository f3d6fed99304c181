"""The root-rotation plan: publish, switch on reports, retire after a leaf lifetime."""

from __future__ import annotations

import datetime as dt

import pytest

from injector.mesh import trust
from injector.mesh.signer import MeshError
from injector.mesh.trust import ACTIVE, NEXT, RETIRING, Acks, RotationPolicy, TrustState

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
POLICY = RotationPolicy(root_lifetime=dt.timedelta(days=30), rotate_fraction=1 / 3)


def _states(state: TrustState) -> list[str]:
    return [r.state for r in state.roots]


def test_a_full_rotation() -> None:
    first = trust.plan(None, "td", T0, POLICY)
    assert first.changed
    assert _states(first.state) == [ACTIVE]
    assert not trust.plan(first.state, "td", T0 + DAY, POLICY).changed
    due = T0 + 21 * DAY  # less than a third of 30 days left
    published = trust.plan(first.state, "td", due, POLICY)
    state = published.state
    assert _states(state) == [ACTIVE, NEXT]
    assert state.generation == 2
    assert state.bundle_pem.count(b"BEGIN CERTIFICATE") == 2
    waiting = trust.plan(state, "td", due + HOUR, POLICY, Acks(3, ("shop/a",), 1))
    assert not waiting.changed
    switched = trust.plan(state, "td", due + 2 * HOUR, POLICY, Acks(3))
    state = switched.state
    assert _states(state) == [RETIRING, ACTIVE]
    assert state.generation == 2
    assert "all 3 agents trust it" in switched.reasons[0]
    assert state.active.fingerprint == published.state.next.fingerprint  # type: ignore[union-attr]
    retiring = state.roots[0]
    assert retiring.retire_at == due + 2 * HOUR + POLICY.leaf_lifetime + trust.RETIRE_MARGIN
    assert not trust.plan(state, "td", retiring.retire_at - dt.timedelta(seconds=1), POLICY).changed
    retired = trust.plan(state, "td", retiring.retire_at, POLICY)
    assert _states(retired.state) == [ACTIVE]
    assert retired.state.generation == 3
    assert retired.reasons == (f"retired root {retiring.fingerprint[:16]}",)


def test_switch_without_every_report_after_the_timeout_raises_an_alarm() -> None:
    state = trust.plan(None, "td", T0, POLICY).state
    state = trust.plan(state, "td", T0, POLICY, request="now").state
    assert state.next is not None
    acks = Acks(10, ("shop/a-1", "shop/b-2"), 2)
    assert not trust.plan(state, "td", T0 + 23 * HOUR, POLICY, acks, "now").changed
    late = trust.plan(state, "td", T0 + 24 * HOUR, POLICY, acks, "now")
    assert _states(late.state) == [RETIRING, ACTIVE]
    assert "2 agents did not report" in late.alarms[0]
    assert "shop/a-1, shop/b-2" in late.alarms[0]


def test_a_request_rotates_once() -> None:
    state = trust.plan(None, "td", T0, POLICY, request="r1").state
    assert not trust.plan(state, "td", T0, POLICY, request="r1").changed
    asked = trust.plan(state, "td", T0, POLICY, request="r2")
    assert "rotation requested" in asked.reasons[0]
    assert asked.state.handled_request == "r2"


def test_an_active_root_about_to_expire_switches_at_once() -> None:
    policy = RotationPolicy(root_lifetime=dt.timedelta(days=30), rotate_fraction=0.01)
    state = trust.plan(None, "td", T0, policy).state
    end = state.active.authority.not_after
    alarm = trust.plan(state, "td", end - 20 * DAY, policy)
    assert "no rotation has started" in alarm.alarms[0]
    assert not alarm.changed
    forced = trust.plan(state, "td", end - HOUR * 40, policy, request="late")
    assert _states(forced.state) == [RETIRING, ACTIVE]
    assert "about to expire" in forced.alarms[0]


def test_state_round_trip_and_corruption() -> None:
    state = trust.plan(None, "td", T0, POLICY).state
    state = trust.plan(state, "td", T0, POLICY, request="x").state
    again = TrustState.from_json(state.to_json())
    assert again.fingerprints == state.fingerprints
    assert again.generation == state.generation
    for bad in ("{}", "not json", '{"generation": 1, "roots": []}'):
        with pytest.raises(MeshError):
            TrustState.from_json(bad)


def test_no_leaf_is_ever_signed_by_an_untrusted_root() -> None:
    """Two years in 6-hour steps, agents slow to report: every leaf an active root
    signed stays trusted until it expires, and no root signs before agents
    could have read it for at least one step."""
    policy = RotationPolicy(
        root_lifetime=dt.timedelta(days=60), rotate_fraction=0.4, ack_timeout=3 * DAY
    )
    state = trust.plan(None, "td", T0, policy).state
    leaves: list[tuple[str, dt.datetime]] = []
    published_at: dict[str, dt.datetime] = {}
    now = T0
    switches = 0
    while now < T0 + 730 * DAY:
        upcoming = state.next
        reported = upcoming is not None and now - published_at[upcoming.fingerprint] >= 2 * DAY
        acks = Acks(5) if reported else Acks(5, ("shop/slow",), 1)
        step = trust.plan(state, "td", now, policy, acks)
        if step.state.active.fingerprint != state.active.fingerprint:
            switches += 1
            assert now - published_at[step.state.active.fingerprint] >= dt.timedelta(hours=6)
        state = step.state
        for record in state.roots:
            published_at.setdefault(record.fingerprint, now)
        leaves.append((state.active.fingerprint, now + policy.leaf_lifetime))
        trusted = set(state.fingerprints)
        assert all(fp in trusted for fp, end in leaves if end > now)
        assert all(r.authority.not_after > now for r in state.roots)
        now += 6 * HOUR
    assert switches >= 15
