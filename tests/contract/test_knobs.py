"""The contract's shapes: rows are unique, typed values survive a trip to
another process (the webhook's workers get ``Settings`` as pickles)."""

from __future__ import annotations

import pickle

import pytest

from contract import proxy, secrets, values
from contract.catalogue import ROLES
from contract.knobs import Knob, Values, environment
from injector.core.specs import settings_from_spec


def test_a_row_id_is_unique() -> None:
    with pytest.raises(ValueError, match="two rows have the id 'timeout'"):
        Knob("timeout", values.DURATION, "again")


def test_values_keep_their_rows_through_pickle() -> None:
    import injector.admission.workers  # noqa: F401 (registers MappingProxyType with copyreg)

    settings = settings_from_spec(
        {"profiles": {"default": {"proxy": {"timeout": "1m"}, "vault": {"address": "http://v"}}}}
    )
    again = pickle.loads(pickle.dumps(settings))
    profile = again.profile(None)
    assert profile.values.get(proxy.TIMEOUT) == 60.0
    assert profile.values.get(secrets.VAULT_ADDR) == "http://v"
    assert again == settings


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_every_example_parses_and_formats_back_to_itself(role) -> None:  # type: ignore[no-untyped-def]
    for knob in role.knobs:
        if knob.example is None:
            continue
        value = knob.parse(knob.example)
        assert knob.parse(knob.format(value)) == value, knob.id
        if knob.default is not None:
            assert value != knob.parsed_default(), f"{knob.id}: the example is the default"


def test_a_profile_duration_normalises_like_an_annotation() -> None:
    settings = settings_from_spec({"profiles": {"default": {"proxy": {"timeout": "1m"}}}})
    profile = settings.profile(None)
    assert profile is not None
    assert environment(proxy.ROLE, profile.values) == [("SIDECAR_TIMEOUT", "60s")]
    assert environment(proxy.ROLE, Values({proxy.TIMEOUT: proxy.TIMEOUT.parse("1m")})) == [
        ("SIDECAR_TIMEOUT", "60s")
    ]
