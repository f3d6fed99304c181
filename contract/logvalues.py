"""The kinds of value only the logs role takes: the sink, globs, the logs
path, the multiline pattern, pod label keys, sizes and a Secret's key. Pure
parsers, each raising ``ValueError`` that says what is accepted (the
injector validates annotations with them, the agent its variables)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from contract.knobs import Value

SINK_HELP = (
    "stdout, loki+http(s)://HOST:PORT, elasticsearch+http(s)://HOST:PORT/INDEX "
    "or an http(s):// URL that takes NDJSON"
)
FILES_HELP = "comma-separated globs relative to the logs path, such as *.log,audit/*.json"
PATH_HELP = "an absolute directory path other than /, such as /var/log/app"
LABELS_HELP = "comma-separated pod label keys such as app,app.kubernetes.io/version"
MULTILINE_HELP = "a regular expression that matches the first line of a record, e.g. ^\\d{4}-"
SIZE_HELP = "a size in bytes, or with Ki/Mi, such as 65536, 64Ki or 1Mi"
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')
_PUSH = "/loki/api/v1/push"


@dataclass(frozen=True)
class SinkSpec:
    """Where records go: ``kind`` stdout, loki, elasticsearch or http; ``url`` the
    request URL (Loki's push path, the index's ``_bulk`` path, or as given);
    ``text`` as the user wrote it."""

    kind: str
    url: str = ""
    index: str = ""
    text: str = field(default="stdout", compare=False)

    def __str__(self) -> str:
        return "stdout" if self.kind == "stdout" else f"{self.kind} {self.url}"


def parse_sink(text: str) -> SinkSpec:
    value = text.strip()
    if value == "stdout":
        return SinkSpec("stdout")
    kind, plus, rest = value.partition("+")
    if not plus:
        kind, rest = "http", value
    if kind not in ("loki", "elasticsearch", "http"):
        raise ValueError(f"{text!r} is not {SINK_HELP}")
    parts = urlsplit(rest)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not {SINK_HELP}")
    if parts.username or parts.password:
        raise ValueError(
            f"{text!r} has credentials in the URL; annotations are readable by anyone who can "
            "read the pod: give them in a file (SIDECAR_LOGS_SINK_AUTH_FILE) instead"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port; use {SINK_HELP}") from None
    if port == 0 or parts.fragment or any(c.isspace() for c in value):
        raise ValueError(f"{text!r} is not {SINK_HELP}")
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if kind == "loki":
        if parts.query:
            raise ValueError(f"{text!r}: a Loki sink takes no query string")
        return SinkSpec("loki", base + (path if path.endswith(_PUSH) else path + _PUSH), "", value)
    if kind == "elasticsearch":
        index = path.strip("/")
        _check_index(index, text)
        return SinkSpec("elasticsearch", f"{base}/{index}/_bulk", index, value)
    return SinkSpec("http", rest, "", value)


def _check_index(index: str, text: str) -> None:
    """Elasticsearch's index name rules (lowercase, no \\ / * ? " < > | , # : or
    space, not starting with - _ +, not . or .., at most 255 bytes)."""
    if (
        not index
        or index != index.lower()
        or set(index) & _INDEX_FORBIDDEN
        or index[0] in "-_+"
        or index in (".", "..")
        or len(index.encode()) > 255
    ):
        raise ValueError(
            f"{text!r} needs an index name after the host, such as "
            'elasticsearch+https://es:9200/app-logs (lowercase; no \\ / * ? " < > | , # : '
            "or spaces; not starting with - _ +)"
        )


def parse_files(text: str) -> tuple[str, ...]:
    globs = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not globs:
        raise ValueError(f"{text!r} is not {FILES_HELP}")
    for pattern in globs:
        if pattern.startswith("/") or ".." in pattern.split("/") or "**" in pattern:
            raise ValueError(
                f"{pattern!r} must stay inside the logs path (no leading '/', '..' or '**'); "
                f"expected {FILES_HELP}"
            )
    return globs


def parse_logs_path(text: str) -> str:
    value = text.strip().rstrip("/")
    if not value.startswith("/") or ".." in value.split("/") or any(c in value for c in "\n\0"):
        raise ValueError(f"{text!r} is not {PATH_HELP}")
    return value


def parse_multiline(text: str) -> re.Pattern[str]:
    if not text.strip() or len(text) > 1024:
        raise ValueError(f"{text!r} is not {MULTILINE_HELP} (at most 1024 characters)")
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"{text!r} is not a valid regular expression ({exc})") from None


def parse_label_keys(text: str) -> tuple[str, ...]:
    keys = tuple(item.strip() for item in text.split(",") if item.strip())
    if not keys:
        raise ValueError(f"{text!r} names no label; expected {LABELS_HELP}")
    for key in keys:
        prefix, slash, name = key.rpartition("/")
        if not _LABEL_NAME.match(name) or (
            slash and (not _DNS_SUBDOMAIN.match(prefix) or len(prefix) > 253)
        ):
            raise ValueError(f"{key!r} is not a label key; expected {LABELS_HELP}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{text!r} repeats a label key")
    return keys


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d{1,12})(Ki|Mi)?", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not {SIZE_HELP}")
    number = int(match.group(1)) * {"Ki": 1024, "Mi": 1024 * 1024, None: 1}[match.group(2)]
    if number < 1:
        raise ValueError(f"{text!r} is not {SIZE_HELP} (at least 1)")
    return number


def bounded(low: int, high: int) -> Value[int]:
    def parse(text: str) -> int:
        value = text.strip()
        if not value.isdigit() or not low <= int(value) <= high:
            raise ValueError(f"{text!r} is not a whole number from {low} to {high}")
        return int(value)

    return Value(f"a whole number from {low} to {high}", parse)


@dataclass(frozen=True)
class SecretKey:
    """A key of a Secret in the pod's namespace: ``NAME/KEY``."""

    name: str
    key: str

    def __str__(self) -> str:
        return f"{self.name}/{self.key}"


SECRET_KEY_HELP = "a Secret and one of its keys: NAME/KEY, such as loki-credentials/authorization"  # noqa: S105
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


def parse_secret_key(text: str) -> SecretKey:
    name, slash, key = text.strip().partition("/")
    if not slash or not _DNS_SUBDOMAIN.match(name) or len(name) > 253 or not _SECRET_KEY.match(key):
        raise ValueError(f"{text!r} is not {SECRET_KEY_HELP}")
    return SecretKey(name, key)


def size_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        size = parse_size(text)
        if not low <= size <= high:
            raise ValueError(f"{text!r} is not from {low} bytes to {high // 1024}Ki")
        return size

    return parse


LOGS_PATH = Value(PATH_HELP, parse_logs_path)
