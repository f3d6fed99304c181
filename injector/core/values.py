"""Parsers for annotation and profile values that ``contract.units`` does not
cover: upstream URLs, retry conditions, config sources, names, paths.

Pure functions raising ``ValueError`` with a message that says what is
accepted, accepting exactly what the sidecar agent accepts (the tests compare
both sides).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from contract.units import parse_retry_on as agent_parse_retry_on
from contract.units import parse_upstream_url as agent_parse_upstream_url

UPSTREAM_HELP = "an http:// or https:// URL with host and optional port, e.g. http://payments:8080"
SOURCE_HELP = "an http(s):// URL, 'configmap:NAME' or 'secret:NAME'"
NAME_HELP = "a lowercase DNS label: a-z, 0-9 and '-', at most 63 characters"
PATH_HELP = "an absolute path such as /etc/app/config"
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def parse_upstream(text: str) -> str:
    """The agent's own check (``contract.units``)."""
    return agent_parse_upstream_url(text)[0]


def parse_retry_on(text: str) -> str:
    """The agent's own check (``contract.units``), in the canonical spelling."""
    return ",".join(agent_parse_retry_on(text))


def parse_source(text: str) -> str:
    value = text.strip()
    if value.startswith(("http://", "https://")) and urlsplit(value).hostname:
        return value
    kind, sep, name = value.partition(":")
    if sep and kind in ("configmap", "secret") and _SUBDOMAIN.match(name):
        return value
    raise ValueError(f"{text!r} is not {SOURCE_HELP} (NAME a lowercase DNS name)")


def parse_name(text: str) -> str:
    value = text.strip()
    if not _LABEL.match(value):
        raise ValueError(f"{text!r} is not {NAME_HELP}")
    return value


def parse_names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError(f"{text!r} is not a comma-separated list of container names")
    for name in names:
        parse_name(name)
    return names


def parse_abs_path(text: str) -> str:
    value = text.strip()
    if not value.startswith("/") or "\x00" in value or ".." in value.split("/"):
        raise ValueError(f"{text!r} is not {PATH_HELP}")
    return value.rstrip("/") or "/"


def is_subdomain(text: str) -> bool:
    return bool(_SUBDOMAIN.match(text))
