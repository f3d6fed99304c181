"""The hand-off from ``sidecar secrets --init`` to the refresher.

The init container leaves its token and the leases it holds in a JSON file
on a memory volume mounted only in the secrets containers (mode 0600, the
agent's own user). The refresher adopts them, so a pod does not ask Vault
for a second set of dynamic credentials or a second token. Secret values are
never stored here: they are already in the rendered files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.files import write_atomic
from sidecar.secrets.auth import Token

STATE_FILE = "handoff.json"


@dataclass
class LeaseState:
    lease_id: str
    duration: float
    issued: float
    renewable: bool
    capped: bool = False
    digest: str = ""
    token_ref: str = ""  # digest of the token that obtained it (see auth.token_ref)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Handoff:
    token: Token | None = None
    leases: dict[str, LeaseState] = field(default_factory=dict)


def save(directory: Path, handoff: Handoff) -> None:
    document = {
        "token": handoff.token.to_json() if handoff.token else None,
        "leases": {name: lease.to_json() for name, lease in handoff.leases.items()},
    }
    write_atomic(directory / STATE_FILE, json.dumps(document).encode(), mode=0o600)


def load(directory: Path) -> Handoff:
    try:
        document = json.loads((directory / STATE_FILE).read_text())
        token = Token.from_json(document["token"]) if document.get("token") else None
        leases = {name: LeaseState(**lease) for name, lease in document["leases"].items()}
        if any(not isinstance(lease.lease_id, str) for lease in leases.values()):
            raise TypeError("lease_id")
    except (OSError, ValueError, KeyError, TypeError):
        return Handoff()
    return Handoff(token, leases)
