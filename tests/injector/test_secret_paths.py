"""Secret paths: the injector's annotation and the agent's SIDECAR_SECRETS
accept exactly the same paths (one parser, ``contract.values``)."""

from __future__ import annotations

import json

import pytest

from contract import secrets
from contract.vault import parse_secrets
from injector.core.model import parse_annotations
from injector.errors import InjectionDenied
from sidecar.errors import UsageError
from sidecar.secrets.settings import load

ENV = {"SIDECAR_VAULT_ADDR": "http://vault:8200", "SIDECAR_VAULT_ROLE": "app"}


def annotated(path: str) -> str:
    request = parse_annotations({"sidecar.example.io/secret-s": path})
    return request.secrets[0].path


def agent(path: str) -> str:
    items = json.dumps([{"name": "s", "path": path}])
    return load([], {**ENV, secrets.SECRETS.env or "": items}).secrets[0].path


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
    assert annotated(path) == agent(path) == path
    (spec,) = parse_secrets(json.dumps([{"name": "s", "path": path}]))
    assert spec.name == "s"


@pytest.mark.parametrize("path", ["secret/../sys/seal", "secret/data/app?v=2", "/", "a b"])
def test_refused_by_both(path: str) -> None:
    with pytest.raises(InjectionDenied):
        annotated(path)
    with pytest.raises(UsageError):
        agent(path)
