"""Vault values: auth mounts, secret names and paths, and the
``SIDECAR_SECRETS`` list the injector gathers from the ``secret-NAME``
annotations and the agent reads. Pure; each parser raises ``ValueError``
saying what is accepted."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from contract.knobs import Value

_MOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@=+\-/]*$")
_SECRET_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@=+\-/]*(\?version=[0-9]+)?$")
_SECRET_FILE = re.compile(r"^[a-zA-Z0-9][-._a-zA-Z0-9]{0,252}$")


def _mount(text: str) -> str:
    value = text.strip().strip("/")
    value = value.removeprefix("auth/")
    if not value or not _MOUNT.match(value):
        raise ValueError(f"{text!r} is not a Vault auth mount")
    return value


MOUNT = Value("a Vault auth mount such as kubernetes", _mount)


def parse_secret_path(text: str) -> str:
    value = text.strip().strip("/")
    if not _SECRET_PATH.match(value) or ".." in value.split("?")[0].split("/"):
        raise ValueError(f"{text!r} is not {SECRET_PATH.accepted}")
    return value


SECRET_PATH = Value(
    "a Vault API path: secret/data/app/db (KV v2, ?version=N pins one), kv/app/db (KV v1), "
    "database/creds/app (dynamic)",
    parse_secret_path,
)


@dataclass(frozen=True)
class SecretSpec:
    """One secret the agent renders: ``name`` (the file), ``path`` (Vault),
    ``template`` (None: ``key: value`` lines; ``json``; a Jinja2 template),
    ``mode`` (file mode bits; None: the agent's default)."""

    name: str
    path: str
    template: str | None = None
    mode: int | None = None


SECRETS_HELP = (
    'a JSON list such as [{"name": "db", "path": "database/creds/app", '
    '"template": "json", "mode": "0440"}]'
)


def _secret_mode(name: str, mode: object) -> int | None:
    if mode is None:
        return None
    if not isinstance(mode, str) or not re.fullmatch(r"0?[0-7]{3}", mode):
        raise ValueError(f"secret {name}: mode {mode!r} is not an octal mode like '0440'")
    bits = int(mode, 8)
    if bits & 0o222 & ~0o200 or bits & 0o111:
        raise ValueError(f"secret {name}: mode {mode} lets others write or execute; use 0400-0444")
    return bits


SECRET_NAME_HELP = "a file name: letters, digits, '-', '.' and '_', starting with a letter or digit"  # noqa: S105


def parse_secret_name(text: str) -> str:
    """The file a secret is rendered to: what the agent writes and the injector
    accepts in ``secret-NAME`` (one rule for both)."""
    if not _SECRET_FILE.match(text) or text.startswith(".."):
        raise ValueError(f"secret name {text!r} cannot be a file name: expected {SECRET_NAME_HELP}")
    return text


SECRET_NAME = Value(SECRET_NAME_HELP, parse_secret_name)


def _secret(item: object) -> SecretSpec:
    if not (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and isinstance(item.get("path"), str)
    ):
        raise ValueError(f"each entry needs string 'name' and 'path': {SECRETS_HELP}")
    name = parse_secret_name(item["name"])
    try:
        path = parse_secret_path(item["path"])
    except ValueError:
        raise ValueError(
            f"secret {name}: path {item['path']!r} is not a Vault API path "
            "such as secret/data/app or database/creds/app"
        ) from None
    template = item.get("template")
    if template is not None and not isinstance(template, str):
        raise ValueError(f"secret {name}: template must be a string")
    return SecretSpec(name, path, template or None, _secret_mode(name, item.get("mode")))


def parse_secrets(text: str) -> tuple[SecretSpec, ...]:
    try:
        items = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON; expected {SECRETS_HELP}") from None
    if not isinstance(items, list) or not items:
        raise ValueError(f"expected a non-empty list: {SECRETS_HELP}")
    specs = tuple(_secret(item) for item in items)
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"secret names must be unique; repeated: {', '.join(repeated)}")
    return specs


@functools.lru_cache(maxsize=256)  # the same pod's list, for its init and sidecar containers
def format_secrets(specs: tuple[SecretSpec, ...]) -> str:
    items = []
    for spec in specs:
        item: dict[str, str] = {"name": spec.name, "path": spec.path}
        if spec.template is not None:
            item["template"] = spec.template
        if spec.mode is not None:
            item["mode"] = f"0{spec.mode:o}"
        items.append(item)
    return _COMPACT.encode(items)


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps(..., separators) makes one a call


SECRETS = Value(SECRETS_HELP, parse_secrets, format_secrets)
