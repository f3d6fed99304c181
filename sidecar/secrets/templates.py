"""Rendering a secret's data to the bytes of its file.

* no template: one ``key: value`` line per key, sorted (non-string values as
  JSON);
* ``json``: the data object as JSON;
* anything else: a Jinja2 template, sandboxed (no attribute access to
  Python internals), with the secret's data as ``data``
  (``{{ data.username }}``); a key the secret lacks is an error naming it
  (``StrictUndefined``). Jinja2 is imported only when such a template is used.

Errors name the secret, the path and the key, never a value: messages of
exceptions raised while rendering are withheld, since they may quote data.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sidecar.errors import OutputError
from sidecar.secrets.settings import SecretSpec

_NO_ATTRIBUTE = re.compile(r"has no attribute '([^']*)'")
_UNDEFINED = re.compile(r"^'([^']*)' is undefined$")


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
    keys = ", ".join(sorted(data)) or "no keys"
    try:
        return env.from_string(spec.template or "").render(data=data)
    except UndefinedError as exc:
        message = str(exc.message or "")
        top = _UNDEFINED.match(message)
        if top:
            raise OutputError(
                f"secret {spec.name}: template uses {top.group(1)!r}, which is not defined; "
                f"the secret's keys are under data (e.g. {{{{ data.{top.group(1)} }}}}; "
                f"it has: {keys})"
            ) from None
        attribute = _NO_ATTRIBUTE.search(message)
        missing = attribute.group(1) if attribute else message
        raise OutputError(
            f"secret {spec.name}: template uses key {missing!r}, which the secret at "
            f"{spec.path} does not have (it has: {keys})"
        ) from None
    except TemplateError as exc:
        raise OutputError(f"secret {spec.name}: template error: {exc}") from None
    except Exception as exc:  # a template can raise anything; never leak its message
        raise OutputError(
            f"secret {spec.name}: template failed with {type(exc).__name__} (message withheld: "
            "it may quote the secret); check the expressions and filters it uses"
        ) from None
