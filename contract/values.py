"""Every kind of value a knob takes, as a ``Value``: its parser (text ->
type), its canonical spelling, and what is accepted in words.

The parsers are pure; each raises ``ValueError`` naming the value and what
is accepted. Types: seconds as ``float``, ``Rate``, ``Upstream``, tuples for
lists, ``Literal`` strings for modes.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, TypeVar, cast
from urllib.parse import urlsplit

from contract import quantities, units
from contract.knobs import Value
from contract.reload import RELOAD_HELP, ReloadTarget, parse_reload

S = TypeVar("S", bound=str)
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

NativeMode = Literal["auto", "true", "false"]
SecretsMode = Literal["both", "init", "sidecar"]
LogLevel = Literal["debug", "info", "warning", "error"]


def choice(*choices: S) -> Value[S]:
    """One of ``choices`` (case-insensitive); the first is listed first."""
    accepted = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]

    def parse(text: str) -> S:
        value = text.strip().lower()
        for candidate in choices:
            if candidate == value:
                return candidate
        raise ValueError(f"{text!r} is not one of {', '.join(choices)}")

    return Value(accepted, parse)


# --- scalars ---------------------------------------------------------------


def _format_bool(value: bool) -> str:
    return "true" if value else "false"


def _whole(minimum: int, maximum: int = 2**31 - 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = units.parse_positive_int(text, maximum=maximum)
        if value < minimum:
            raise ValueError(f"{text!r} is less than {minimum}")
        return value

    return parse


def _duration_at_least(minimum: float, words: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        seconds = units.parse_duration(text)
        if seconds < minimum or (minimum == 0 and seconds <= 0):
            raise ValueError(f"{text!r} is not {words}")
        return seconds

    return parse


BOOL = Value(units.BOOL_HELP, units.parse_bool, _format_bool)
DURATION = Value(units.DURATION_HELP, units.parse_duration, units.format_duration)
POSITIVE_DURATION = Value(
    units.DURATION_HELP + ", more than 0s",
    _duration_at_least(0, "longer than 0s"),
    units.format_duration,
)
INTERVAL = Value(
    units.DURATION_HELP + ", at least 1s",
    _duration_at_least(1, "at least 1s"),
    units.format_duration,
)
PORT = Value(units.PORT_HELP, units.parse_port)
RATE = Value(units.RATE_HELP, units.parse_rate)
RETRIES = Value("a whole number from 0 to 10", _whole(0, 10))
AT_LEAST_ONE = Value("a whole number, at least 1", _whole(1))
GID = Value("a group id (a whole number)", _whole(0))
RETRY_ON = Value(units.RETRY_ON_HELP, units.parse_retry_on, ",".join)
ADDRESS = Value(units.ADDRESS_HELP, units.parse_address, lambda a: f"{a[0]}:{a[1]}")
PORT_RANGES = Value(units.PORTS_HELP, units.parse_port_ranges, units.format_port_ranges)


def _some_port_ranges(text: str) -> tuple[units.PortRange, ...]:
    found = units.parse_port_ranges(text)
    if not found:
        raise ValueError(f"no port given; {units.PORTS_HELP}")
    return found


# At least one port: for a row whose absence is its "none".
SOME_PORT_RANGES = Value(units.PORTS_HELP, _some_port_ranges, units.format_port_ranges)
INBOUND_PORTS = Value(
    units.INBOUND_PORTS_HELP, units.parse_inbound_ports, units.format_inbound_ports
)
CIDRS = Value(units.CIDRS_HELP, units.parse_cidrs, units.format_cidrs)
NON_ROOT_UID = Value("a user id other than 0 (a whole number)", _whole(1))
LOG_LEVEL: Value[LogLevel] = choice("debug", "info", "warning", "error")
NATIVE_MODE: Value[NativeMode] = choice("auto", "true", "false")
SECRETS_MODE: Value[SecretsMode] = choice("both", "init", "sidecar")
RELOAD: Value[ReloadTarget] = Value(RELOAD_HELP, parse_reload)


def _text(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError(f"{text!r} is empty")
    return value


TEXT = Value("a non-empty string", _text)
FILE = Value("a file path", lambda t: Path(_text(t)))
DIRECTORY = Value("a directory path", lambda t: Path(_text(t)))


# --- names, paths, URLs ------------------------------------------------------


def parse_name(text: str) -> str:
    value = text.strip()
    if not _LABEL.match(value):
        raise ValueError(f"{text!r} is not {NAME.accepted}")
    return value


NAME = Value("a lowercase DNS label: a-z, 0-9 and '-', at most 63 characters", parse_name)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError(f"{text!r} names no container")
    for name in names:
        parse_name(name)
    return names


NAMES = Value("comma-separated container names", _names, ",".join)


def _absolute(text: str) -> str:
    value = text.strip()
    if not value.startswith("/") or "\x00" in value or ".." in value.split("/"):
        raise ValueError(f"{text!r} is not an absolute path")
    return value.rstrip("/") or "/"


ABSOLUTE_PATH = Value("an absolute path such as /etc/app/config", _absolute)


def _http_url(text: str) -> str:
    value = text.strip()
    if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return value.rstrip("/")


HTTP_URL = Value("an http:// or https:// URL", _http_url)

PEM_LIMIT = 64 * 1024
_PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----"
)


def _pem_certificates(text: str) -> str:
    """PEM certificates, checked for shape only (base64 between the markers);
    the agent hands them to OpenSSL."""
    value = text.strip()
    if len(value) > PEM_LIMIT:
        raise ValueError(f"{len(value)} characters, more than {PEM_LIMIT // 1024} KiB")
    blocks = _PEM_BLOCK.findall(value)
    try:
        if not all(binascii.a2b_base64("".join(b.split()), strict_mode=True) for b in blocks):
            blocks = []
    except binascii.Error:
        blocks = []
    if not blocks or _PEM_BLOCK.sub("", value).strip():
        raise ValueError("not PEM certificates")
    return value + "\n"


PEM_CERTIFICATES = Value(
    f"PEM certificates (-----BEGIN CERTIFICATE-----...), at most {PEM_LIMIT // 1024} KiB",
    _pem_certificates,
)


@dataclass(frozen=True)
class Upstream:
    """Where the proxy's outbound listener sends requests."""

    url: str
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return self.url

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        """The Host header the upstream expects."""
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


UPSTREAM = Value(
    "an http:// or https:// URL, host and port only",
    lambda text: Upstream(*units.parse_upstream_url(text)),
)


@dataclass(frozen=True)
class UrlSource:
    url: str

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class KubeSource:
    kind: Literal["configmap", "secret"]
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


Source = UrlSource | KubeSource
SOURCE_HELP = "an http(s):// URL, 'configmap:NAME' or 'secret:NAME'"


def parse_source(text: str) -> Source:
    value = text.strip()
    if value.startswith(("http://", "https://")) and urlsplit(value).hostname:
        return UrlSource(value)
    kind, sep, name = value.partition(":")
    if sep and kind in ("configmap", "secret") and _SUBDOMAIN.match(name):
        return KubeSource(cast("Literal['configmap', 'secret']", kind), name)
    raise ValueError(f"{text!r} is not {SOURCE_HELP} (NAME a lowercase DNS name)")


SOURCE: Value[Source] = Value(SOURCE_HELP, parse_source)


def _file_name(text: str) -> str:
    value = text.strip()
    if not value or "/" in value or value.startswith("."):
        raise ValueError(f"{text!r} must be a plain file name (no '/', not starting with '.')")
    return value


FILE_NAME = Value("a plain file name (no '/', not starting with '.')", _file_name)


# --- images and resources ------------------------------------------------------


def _image(text: str) -> str:
    value = text.strip()
    if not value or any(c.isspace() for c in value) or value.startswith(("/", "-")):
        raise ValueError(f"{text!r} is not an image reference")
    return value


IMAGE = Value("an image reference such as registry.example.io/sidecar:1.0", _image)


@dataclass(frozen=True)
class Quantity:
    """A Kubernetes quantity: the text as written (stripped) and its exact amount."""

    text: str
    amount: Fraction

    def __str__(self) -> str:
        return self.text


CPU = Value(quantities.CPU_HELP, lambda t: Quantity(t.strip(), quantities.parse_cpu(t)))
MEMORY = Value(quantities.MEMORY_HELP, lambda t: Quantity(t.strip(), quantities.parse_memory(t)))


def parse_concurrency(text: str) -> int:
    """A whole number of workers, or a CPU quantity (``500m``, ``1.5``) rounded up."""
    value = text.strip()
    accepted = "a whole number of worker threads (at least 1) or a CPU quantity such as 500m"
    try:
        cpus = float(value[:-1]) / 1000 if value.endswith("m") else float(value)
    except ValueError:
        raise ValueError(f"{text!r} is not {accepted}") from None
    if not math.isfinite(cpus) or cpus <= 0 or cpus > 1024:
        raise ValueError(f"{text!r} is not {accepted}")
    return max(1, math.ceil(cpus))


CONCURRENCY = Value(
    "a whole number of worker threads, or a CPU quantity rounded up", parse_concurrency
)
