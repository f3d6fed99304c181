"""The status annotation's text is exactly what ``json.dumps`` (compact) writes,
whatever the names hold: msgspec writes it when the text is printable ASCII,
json.dumps otherwise (goldens and earlier injections compare it as text)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from injector.core.status import Status

names = st.text(max_size=12)


@given(names, st.lists(names, max_size=3), st.one_of(st.none(), names), st.booleans())
def test_status_text_is_json_dumps(
    profile: str, volumes: list[str], job: str | None, flag: bool
) -> None:
    status = Status(
        version="0.1.0",
        profile=profile,
        roles=("proxy", "secrets"),
        mode="native",
        job=job,
        init_containers=tuple(volumes),
        containers=(),
        volumes=tuple(volumes),
        share_process_namespace=flag,
        default_container=not flag,
        env=tuple(volumes),
    )
    text = status.to_json()
    data = json.loads(text)
    assert text == json.dumps(data, separators=(",", ":"))
    assert data["profile"] == profile
