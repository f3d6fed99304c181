"""Rendering a secret's data to the bytes of its file.

* no template: one ``key: value`` line per key, sorted (non-string values as
  JSON);
* ``json``: the data object as JSON;
* anything else: a Jinja2 template, sandboxed (no attribute access to
  Python internals), with the secret's data as ``data``
  (``{{ data.username }}``); a key the secret lacks is an error naming it
  (``StrictUndefined``). Jinja2 is imported only when such a template is used.

Errors name the secret, the path and the key, never a value. A template is
compiled before it sees any data, so compile errors are shown as they are;
messages of exceptions raised while rendering are withheld, since they may
quote data, and a missing key is named only when the template itself spells
it (``data[data.password]`` would otherwise print the password).
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
        from jinja2.exceptions import SecurityError  # noqa: PLC0415
        from jinja2.sandbox import SandboxedEnvironment  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - jinja2 ships in the sidecar image
        raise OutputError(f"secret {spec.name}: custom templates need jinja2") from exc
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    source = spec.template or ""
    try:
        compiled = env.from_string(source)
    except TemplateError as exc:  # compiling sees only the template: its message is safe
        raise OutputError(f"secret {spec.name}: template error: {exc}") from None
    try:
        return compiled.render(data=data)
    except UndefinedError as exc:
        raise OutputError(_undefined(spec, source, data, str(exc.message or ""))) from None
    except SecurityError:
        raise OutputError(
            f"secret {spec.name}: template error: it reaches an attribute the sandbox forbids "
            "(names starting with _ and Python internals); use data.KEY or data['KEY']"
        ) from None
    except Exception as exc:  # a template can raise anything; never leak its message
        raise OutputError(
            f"secret {spec.name}: template failed with {type(exc).__name__} (message withheld: "
            "it may quote the secret); check the expressions and filters it uses"
        ) from None


def _undefined(spec: SecretSpec, source: str, data: dict[str, Any], message: str) -> str:
    """What a missing name means, naming it only when the template itself spells it
    (``data[data.password]`` looks up a key named by a secret value: withheld)."""
    top = _UNDEFINED.match(message)
    attribute = None if top else _NO_ATTRIBUTE.search(message)
    found = top or attribute
    name = found.group(1) if found else None
    if name is not None and not _spelled_in(name, source, data):
        name = None
    keys = _key_list(data)
    if top and name is not None:
        return (
            f"secret {spec.name}: template uses {name!r}, which is not defined; "
            f"the secret's keys are under data (e.g. {{{{ data.{name} }}}}; it has: {keys})"
        )
    if name is not None:
        return (
            f"secret {spec.name}: template uses key {name!r}, which the secret at "
            f"{spec.path} does not have (it has: {keys})"
        )
    return (
        f"secret {spec.name}: template looks up a name the secret at {spec.path} does not "
        f"have, and the name is withheld (it is not written in the template, so it may come "
        f"from the secret's data); the secret has: {keys}"
    )


def _spelled_in(name: str, source: str, data: dict[str, Any]) -> bool:
    """Whether ``name`` is written in the template and is no value of the secret."""
    if not name or not re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", source):
        return False
    return not any(name in _scalar(value) for value in data.values())


def _key_list(data: dict[str, Any], limit: int = 20) -> str:
    keys = sorted(str(k) for k in data)
    if not keys:
        return "no keys"
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
