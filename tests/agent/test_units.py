from __future__ import annotations

import pytest

from contract.units import (
    Rate,
    format_duration,
    parse_bool,
    parse_duration,
    parse_port,
    parse_rate,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("1m30s", 90.0), ("1h", 3600.0), ("0s", 0.0), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "2", "-1s", "2 s", "1d", "s", "1s2"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="a duration such as 500ms"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (0.25, 2.0, 90.0):
        assert parse_duration(format_duration(seconds)) == seconds


def test_rates() -> None:
    assert parse_rate("100/s") == Rate(100, 1.0)
    assert str(parse_rate("600/m")) == "600/m"
    for bad in ("0/s", "100", "100/d", "1.5/s"):
        with pytest.raises(ValueError, match="a rate such as 100/s"):
            parse_rate(bad)


def test_ports_and_bools() -> None:
    assert parse_port("8080") == 8080
    for bad in ("0", "65536", "http", "-1"):
        with pytest.raises(ValueError, match="from 1 to 65535"):
            parse_port(bad)
    assert parse_bool("True") is True
    assert parse_bool("false") is False
    with pytest.raises(ValueError, match='"true" or "false"'):
        parse_bool("maybe")
