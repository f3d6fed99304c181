"""The injector accepts exactly what the agent accepts, for every annotation.

For each annotation an agent reads (a row with a ``SIDECAR_*`` variable), a
spread of values (edge, malformed and hostile ones, the row's example and
default) is put to both sides:

* the injector: ``parse_annotations`` on the role's example pod with this
  annotation set to the value: refused means ``InjectionDenied`` naming the
  annotation;
* the agent: the role's own loader (``sidecar.<role>.settings.load``) with
  the environment a rendered container gets, this row's variable set to the
  value as written: refused means ``UsageError``.

Both verdicts must agree for every value; where both accept, the agent must
read what the injector writes (its canonical spelling) as the same value it
reads from the raw annotation. ``config-interval: 500ms`` once passed the
injector and crash-looped the agent ("below 1s"); now both refuse it, and
``test_a_stricter_agent_is_caught`` plants that kind of difference and shows
this comparison finds it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from contract import layout
from contract.catalogue import ROLES
from contract.knobs import Knob, Role
from injector.core.model import parse_annotations
from injector.errors import InjectionDenied
from sidecar.errors import UsageError
from tests.contract.test_roles import _admitted, _agent_settings, _annotations, _containers, _env

COMMON = [
    "",
    " ",
    "0",
    "1",
    "-1",
    "07",
    "0.5",
    "1e3",
    "9" * 400,
    "500ms",
    "999ms",
    "0s",
    "1s",
    " 5s ",
    "5S",
    "1m30s",
    "87600h",
    "87601h",
    "10/s",
    "0/s",
    "600/m",
    "65535",
    "65536",
    "true",
    "TRUE",
    "false",
    "yes",
    "http://x:80",
    "http://x",
    "https://x:443/",
    "ftp://x",
    "configmap:app",
    "secret:app",
    "configmap:UPPER",
    "/etc/x",
    "relative/x",
    "signal:SIGHUP",
    "signal:KILL",
    "GET http://127.0.0.1:8080/-/reload",
    "5xx,connect-failure",
    "bogus",
    "\x00",
    "é",
]


def agent_rows() -> list[tuple[Role, Knob[Any]]]:
    return [
        (role, knob)
        for role in ROLES
        for knob in role.annotated
        if knob.env and "NAME" not in (knob.annotation or "") and knob is not role.switch
    ]


def values_for(knob: Knob[Any]) -> list[str]:
    extra = [v for v in (knob.example, knob.default) if v is not None]
    return list(dict.fromkeys([*COMMON, *extra]))


def injector_accepts(role: Role, knob: Knob[Any], value: str) -> bool:
    annotations = _annotations(role)
    key = layout.PREFIX + (knob.annotation or "")
    annotations[key] = value
    try:
        parse_annotations(annotations)
    except InjectionDenied as exc:
        if key not in str(exc):
            raise AssertionError(f"{key}={value!r} denied for another reason: {exc}") from exc
        return False
    return True


Loader = Callable[[Mapping[str, Any], Role, dict[str, str]], Any]
IN_CONTEXT = object()  # the value is valid; this example pod cannot take it (e.g. no runAsUser)


def agent_reads(
    role: Role, knob: Knob[Any], value: str, loader: Loader = _agent_settings
) -> tuple[bool, Any]:
    """(accepted, the value the agent read) for the raw annotation value."""
    container = _containers(_admitted(role), role)[-1]  # the long-running one
    env = _env(container)
    assert knob.env is not None
    env[knob.env] = value
    try:
        settings = loader(container, role, env)
    except UsageError:
        return False, None
    return True, getattr(settings, knob.field)


def rendered_value(role: Role, knob: Knob[Any], value: str) -> Any:
    """What the agent reads from the container the injector renders for ``value``."""
    from tests.contract import test_roles

    original = test_roles._annotations

    def annotated(r: Role) -> dict[str, str]:
        found = original(r)
        found[layout.PREFIX + (knob.annotation or "")] = value
        return found

    test_roles._annotations = annotated
    try:
        pod = _admitted(role)
    except AssertionError as exc:  # a valid value this pod cannot have (its context)
        if "is not valid" in str(exc):
            raise
        return IN_CONTEXT
    finally:
        test_roles._annotations = original
    container = _containers(pod, role)[-1]
    return getattr(_agent_settings(container, role, _env(container)), knob.field)


def disagreements(role: Role, knob: Knob[Any], loader: Loader = _agent_settings) -> list[str]:
    found = []
    for value in values_for(knob):
        injector = injector_accepts(role, knob, value)
        agent, read = agent_reads(role, knob, value, loader)
        if not value.strip():
            # An empty variable is "unset" to the agent; the injector refuses an
            # empty annotation, so it never renders one.
            if injector:
                found.append(f"{knob.annotation}={value!r}: the injector accepts an empty value")
            continue
        if injector and not agent and rendered_value(role, knob, value) is IN_CONTEXT:
            continue  # valid alone, refused by both sides next to this pod's other rows
        if injector != agent:
            found.append(
                f"{knob.annotation}={value[:40]!r}: injector "
                f"{'accepts' if injector else 'refuses'}, agent {'accepts' if agent else 'refuses'}"
            )
        elif injector and rendered_value(role, knob, value) not in (read, IN_CONTEXT):
            found.append(
                f"{knob.annotation}={value[:40]!r}: the agent reads the render differently"
            )
    return found


def test_every_annotation_an_agent_reads_is_compared() -> None:
    rows = agent_rows()
    assert len(rows) >= 12
    assert any(k.annotation == "config-interval" for _, k in rows)


@pytest.mark.parametrize(
    ("role", "knob"), agent_rows(), ids=lambda x: getattr(x, "annotation", None) or x.name
)
def test_the_injector_accepts_what_the_agent_accepts(role: Role, knob: Knob[Any]) -> None:
    assert disagreements(role, knob) == []


def test_a_stricter_agent_is_caught() -> None:
    """The planted fault: an agent stricter than the injector, as when the agent
    alone refused intervals under 1s (both now share that validator: the fault
    planted here is an agent refusing intervals under 2s)."""
    role = next(r for r in ROLES if r.name == "config")
    knob = role.knob("interval")

    def strict(container: Mapping[str, Any], r: Role, env: dict[str, str]) -> Any:
        settings = _agent_settings(container, r, env)
        if settings.interval < 2:
            raise UsageError("--interval / SIDECAR_CONFIG_INTERVAL: below 2s")
        return settings

    found = disagreements(role, knob, strict)
    assert "config-interval='1s': injector accepts, agent refuses" in found
    assert disagreements(role, knob) == []  # the real agent agrees


SECRET_NAMES = ["db", "db-2", "a" * 63, "a" * 64, "DB", "db.json", "db_x", ".db", "-db", "d", "é"]
SECRET_PATHS = [
    "secret/data/app/db",
    "secret/data/app/db?version=2",
    "secret/data/app/db?version=x",
    "database/creds/app",
    "kv/app/db",
    "/secret/data/app",
    "secret/../x",
    "secret/data/",
    "secret data",
    "a?b=1",
    "a" * 300,
    "",
]


def secret_disagreements() -> list[str]:
    """The secret-NAME family: the injector's verdict on the annotation against the
    agent's on the SIDECAR_SECRETS entry the injector would write for it."""
    from contract.vault import parse_secrets

    found = []
    role = next(r for r in ROLES if r.name == "secrets")
    base = {k: v for k, v in _annotations(role).items() if "/secret-" not in k}
    for name in SECRET_NAMES:
        for path in SECRET_PATHS:
            if not path.strip():
                continue
            try:
                parse_annotations({**base, f"{layout.PREFIX}secret-{name}": path})
                injector = True
            except InjectionDenied:
                injector = False
            try:
                parse_secrets(json.dumps([{"name": name, "path": path}]))
                agent = True
            except ValueError:
                agent = False
            if injector != agent:
                found.append(
                    f"secret-{name[:20]}={path[:30]!r}: injector "
                    f"{'accepts' if injector else 'refuses'}, agent "
                    f"{'accepts' if agent else 'refuses'}"
                )
    return found


def test_the_secret_family_is_accepted_alike() -> None:
    assert secret_disagreements() == []
