"""Rendering a secret's data to the bytes of its file.

* no template: one ``key: value`` line per key, sorted;
* ``json``: the data object as JSON;
* anything else: a Jinja2 template, sandboxed, with the secret's data as
  ``data`` (``{{ data.username }}``); a key the secret lacks is an error
  naming it. Jinja2 is imported only when such a template is used.
"""

from __future__ import annotations

import json
from typing import Any

from sidecar.errors import OutputError
from sidecar.secrets.settings import SecretSpec


def render(spec: SecretSpec, data: dict[str, Any]) -> bytes:
    if spec.template is None:
        lines = [f"{key}: {_scalar(value)}" for key, value in sorted(data.items())]
        return ("\n".join(lines) + "\n").encode()
    if spec.template == "json":
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    return _jinja(spec, data).encode()


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _jinja(spec: SecretSpec, data: dict[str, Any]) -> str:
    try:
        from jinja2 import StrictUndefined, TemplateError, UndefinedError  # noqa: PLC0415
        from jinja2.sandbox import SandboxedEnvironment  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - jinja2 ships in the sidecar image
        raise OutputError(f"secret {spec.name}: custom templates need jinja2") from exc
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    try:
        return env.from_string(spec.template or "").render(data=data)
    except UndefinedError as exc:
        missing = str(exc.message or "").split("attribute ")[-1].strip("'\"")
        raise OutputError(
            f"secret {spec.name}: template uses key {missing!r}, which the secret at "
            f"{spec.path} does not have (it has: {', '.join(sorted(data)) or 'no keys'})"
        ) from None
    except TemplateError as exc:
        raise OutputError(f"secret {spec.name}: template error: {exc}") from None
