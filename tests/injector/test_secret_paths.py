"""Secret paths the injector accepts are exactly those the agent accepts."""

from __future__ import annotations

import json

import pytest

from injector.core.model import _secret_path
from sidecar.errors import UsageError
from sidecar.secrets.settings import parse_secrets


@pytest.mark.parametrize(
    "path",
    [
        "secret/data/app/db",
        "secret/data/app/db?version=2",
        "kv/app",
        "database/creds/app",
        "secret/data/team@x=y+z",
    ],
)
def test_accepted_by_both(path: str) -> None:
    assert _secret_path(path) == path
    (spec,) = parse_secrets(json.dumps([{"name": "s", "path": path}]))
    assert spec.name == "s"


@pytest.mark.parametrize("path", ["secret/../sys/seal", "secret/data/app?v=2", "/", "a b"])
def test_refused_by_both(path: str) -> None:
    with pytest.raises(ValueError):
        _secret_path(path)
    with pytest.raises((ValueError, UsageError)):
        parse_secrets(json.dumps([{"name": "s", "path": path}]))
