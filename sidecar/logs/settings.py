"""``sidecar logs`` settings: every knob of the role in one table, read once.

Each ``Knob`` row says its flag, its ``SIDECAR_*`` variable, its default, its
parser and, for the knobs a pod may set, its annotation (``logs-sink`` is
``sidecar.example.io/logs-sink``). The injector validates those annotations
with the same parsers (pure functions raising ``ValueError`` that says what
is accepted), so both sides accept exactly the same spellings.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from contract.units import parse_address, parse_bool, parse_duration
from sidecar.errors import UsageError
from sidecar.options import ArgumentParser, convert, flag

AGENT_PORT = 15024
LOG_LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
LONG_LINES = ("split", "truncate")
SINK_HELP = (
    "stdout, loki+http(s)://HOST:PORT, elasticsearch+http(s)://HOST:PORT/INDEX "
    "or an http(s):// URL that takes NDJSON"
)
FILES_HELP = "comma-separated globs relative to the logs path, such as *.log,audit/*.json"
PATH_HELP = "an absolute directory path such as /var/log/app"
LABELS_HELP = "comma-separated pod label keys such as app,app.kubernetes.io/version"
MULTILINE_HELP = "a regular expression that matches the first line of a record, e.g. ^\\d{4}-"
SIZE_HELP = "a size in bytes, or with Ki/Mi, such as 65536, 64Ki or 1Mi"
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')


@dataclass(frozen=True)
class SinkSpec:
    """Where records go: ``kind`` stdout, loki, elasticsearch or http; ``url`` the
    request URL (Loki's push path, the index's ``_bulk`` path, or as given)."""

    kind: str
    url: str = ""
    index: str = ""

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
    if port == 0 or parts.fragment:
        raise ValueError(f"{text!r} is not {SINK_HELP}")
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if kind == "loki":
        if parts.query:
            raise ValueError(f"{text!r}: a Loki sink takes no query string")
        push = "/loki/api/v1/push"
        return SinkSpec("loki", base + (path if path.endswith(push) else path + push))
    if kind == "elasticsearch":
        index = path.strip("/")
        check_index(index, text)
        return SinkSpec("elasticsearch", f"{base}/{index}/_bulk", index)
    return SinkSpec("http", rest)


def check_index(index: str, text: str) -> None:
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
    globs = tuple(item.strip() for item in text.split(",") if item.strip())
    if not globs:
        raise ValueError(f"{text!r} is not {FILES_HELP}")
    for pattern in globs:
        if pattern.startswith("/") or ".." in pattern.split("/") or "**" in pattern:
            raise ValueError(
                f"{pattern!r} must stay inside the logs path (no leading '/', '..' or '**'); "
                f"expected {FILES_HELP}"
            )
    return globs


def parse_path(text: str) -> str:
    value = text.strip().rstrip("/")
    if not value.startswith("/") or ".." in value.split("/") or any(c in value for c in "\n\0"):
        raise ValueError(f"{text!r} is not {PATH_HELP}")
    return value


def parse_format(text: str) -> str:
    value = text.strip().lower()
    if value not in FORMATS:
        raise ValueError(f"{text!r} is not text or json")
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
    value = text.strip()
    match = re.fullmatch(r"(\d{1,12})(Ki|Mi)?", value)
    if not match:
        raise ValueError(f"{text!r} is not {SIZE_HELP}")
    number = int(match.group(1)) * {"Ki": 1024, "Mi": 1024 * 1024, None: 1}[match.group(2)]
    if number < 1:
        raise ValueError(f"{text!r} is not {SIZE_HELP} (at least 1)")
    return number


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value

    return parse


def _address(text: str) -> tuple[str, int]:
    return parse_address(text)


def _optional_path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


@dataclass(frozen=True)
class Knob:
    field: str
    flag: str
    env: str
    default: str | None
    parse: Callable[[str], Any]
    help: str
    annotation: str | None = None  # the pod annotation (without the prefix), if any


KNOBS: tuple[Knob, ...] = (
    Knob("path", "--path", "SIDECAR_LOGS_PATH", "/var/log/app", parse_path, PATH_HELP, "logs-path"),
    Knob("files", "--files", "SIDECAR_LOGS_FILES", "*.log", parse_files, FILES_HELP, "logs-files"),
    Knob("sink", "--sink", "SIDECAR_LOGS_SINK", "stdout", parse_sink, SINK_HELP, "logs-sink"),
    Knob(
        "format",
        "--format",
        "SIDECAR_LOGS_FORMAT",
        "text",
        parse_format,
        "text or json",
        "logs-format",
    ),
    Knob(
        "multiline",
        "--multiline",
        "SIDECAR_LOGS_MULTILINE",
        None,
        parse_multiline,
        MULTILINE_HELP,
        "logs-multiline",
    ),
    Knob(
        "label_keys",
        "--labels",
        "SIDECAR_LOGS_LABELS",
        "",
        parse_label_keys,
        LABELS_HELP,
        "logs-labels",
    ),
    Knob(
        "state_dir",
        "--state-dir",
        "SIDECAR_LOGS_STATE_DIR",
        "/var/run/sidecar/logs-state",
        Path,
        "where positions are checkpointed (a volume that outlives the container)",
    ),
    Knob(
        "max_line",
        "--max-line",
        "SIDECAR_LOGS_MAX_LINE",
        "32Ki",
        parse_size,
        "longest record in bytes; longer lines are split or truncated",
    ),
    Knob(
        "long_lines",
        "--long-lines",
        "SIDECAR_LOGS_LONG_LINES",
        "split",
        _choice(LONG_LINES),
        "split or truncate lines longer than --max-line (marked, never dropped silently)",
    ),
    Knob(
        "flush_timeout",
        "--flush-timeout",
        "SIDECAR_LOGS_FLUSH_TIMEOUT",
        "5s",
        parse_duration,
        "how long a last line without its newline (or a multiline record) waits",
    ),
    Knob(
        "batch_bytes",
        "--batch-bytes",
        "SIDECAR_LOGS_BATCH_BYTES",
        "512Ki",
        parse_size,
        "about the largest batch (records before compression; may pass it by one read of 4 KiB)",
    ),
    Knob(
        "batch_wait",
        "--batch-wait",
        "SIDECAR_LOGS_BATCH_WAIT",
        "1s",
        parse_duration,
        "longest a record waits for its batch to fill while the sink is busy",
    ),
    Knob(
        "buffer_batches",
        "--buffer-batches",
        "SIDECAR_LOGS_BUFFER_BATCHES",
        "2",
        lambda t: _bounded_int(t, 1, 64),
        "closed batches held while the sink is busy",
    ),
    Knob(
        "compress",
        "--gzip",
        "SIDECAR_LOGS_GZIP",
        "true",
        parse_bool,
        "gzip request bodies (HTTP sinks)",
    ),
    Knob(
        "sink_timeout",
        "--sink-timeout",
        "SIDECAR_LOGS_SINK_TIMEOUT",
        "30s",
        parse_duration,
        "socket timeout of a request to the sink",
    ),
    Knob(
        "sink_ca",
        "--sink-ca",
        "SIDECAR_LOGS_SINK_CA",
        "",
        _optional_path,
        "PEM CA bundle for an https sink (default: the system's)",
    ),
    Knob(
        "sink_auth_file",
        "--sink-auth-file",
        "SIDECAR_LOGS_SINK_AUTH_FILE",
        "",
        _optional_path,
        "file holding the Authorization header value, re-read on every connection",
    ),
    Knob(
        "loki_tenant",
        "--loki-tenant",
        "SIDECAR_LOGS_LOKI_TENANT",
        "",
        str,
        "Loki sinks: the tenant (X-Scope-OrgID header) of a multi-tenant Loki",
    ),
    Knob(
        "poll",
        "--poll-interval",
        "SIDECAR_LOGS_POLL_INTERVAL",
        "250ms",
        parse_duration,
        "how often idle files and the directory are checked",
    ),
    Knob(
        "rotate_wait",
        "--rotate-wait",
        "SIDECAR_LOGS_ROTATE_WAIT",
        "5s",
        parse_duration,
        "how long a rotated or deleted file is still followed after its last growth",
    ),
    Knob(
        "drain_timeout",
        "--drain-timeout",
        "SIDECAR_LOGS_DRAIN_TIMEOUT",
        "25s",
        parse_duration,
        "on SIGTERM, how long the agent keeps shipping what is left",
    ),
    Knob(
        "max_files",
        "--max-files",
        "SIDECAR_LOGS_MAX_FILES",
        "64",
        lambda t: _bounded_int(t, 1, 1024),
        "most files followed at once",
    ),
    Knob(
        "agent",
        "--agent-addr",
        "SIDECAR_AGENT_ADDR",
        f"0.0.0.0:{AGENT_PORT}",
        _address,
        "health/metrics address",
    ),
    Knob(
        "log_level",
        "--log-level",
        "SIDECAR_LOG_LEVEL",
        "info",
        _choice(LOG_LEVELS),
        "debug, info, warning or error",
    ),
)
# The pod's identity, rendered by the injector from the downward API.
IDENTITY = {
    "namespace": "SIDECAR_POD_NAMESPACE",
    "pod": "SIDECAR_POD_NAME",
    "uid": "SIDECAR_POD_UID",
    "node": "SIDECAR_NODE_NAME",
    "container": "SIDECAR_LOGS_CONTAINER",
}
LABEL_VALUE_ENV = "SIDECAR_LOGS_LABEL_{}"  # one per key of SIDECAR_LOGS_LABELS, in order


def _bounded_int(text: str, low: int, high: int) -> int:
    value = text.strip()
    if not value.isdigit() or not low <= int(value) <= high:
        raise ValueError(f"{text!r} is not a whole number from {low} to {high}")
    return int(value)


@dataclass(frozen=True)
class Identity:
    namespace: str = ""
    pod: str = ""
    uid: str = ""
    node: str = ""
    container: str = ""
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LogsSettings:
    path: str
    files: tuple[str, ...]
    sink: SinkSpec
    format: str
    multiline: re.Pattern[str] | None
    label_keys: tuple[str, ...]
    state_dir: Path
    max_line: int
    long_lines: str
    flush_timeout: float
    batch_bytes: int
    batch_wait: float
    buffer_batches: int
    compress: bool
    sink_timeout: float
    sink_ca: Path | None
    sink_auth_file: Path | None
    loki_tenant: str
    poll: float
    rotate_wait: float
    drain_timeout: float
    max_files: int
    agent: tuple[str, int]
    log_level: str
    identity: Identity


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="sidecar logs", description=__doc__)
    for knob in KNOBS:
        flag(
            parser, knob.flag, knob.env, default=knob.default, help_text=knob.help, environ=environ
        )
    return parser


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> LogsSettings:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(list(argv))
    values: dict[str, Any] = {}
    for knob in KNOBS:
        raw = getattr(args, knob.flag[2:].replace("-", "_"))
        values[knob.field] = None if raw is None else convert(raw, knob.parse, knob.flag, knob.env)
    if values["max_line"] < 256 or values["max_line"] > 1024 * 1024:
        raise UsageError("--max-line / SIDECAR_LOGS_MAX_LINE: must be from 256 bytes to 1Mi")
    if values["batch_bytes"] < values["max_line"] or values["batch_bytes"] > 16 * 1024 * 1024:
        raise UsageError(
            "--batch-bytes / SIDECAR_LOGS_BATCH_BYTES: must be at least --max-line and at most 16Mi"
        )
    if values["poll"] <= 0:
        raise UsageError("--poll-interval / SIDECAR_LOGS_POLL_INTERVAL: must be more than 0s")
    labels = []
    for index, key in enumerate(values["label_keys"]):
        value = env.get(LABEL_VALUE_ENV.format(index), "")
        if value:
            labels.append((key, value))
    identity = Identity(
        **{name: env.get(variable, "") for name, variable in IDENTITY.items()},
        labels=tuple(labels),
    )
    return LogsSettings(**values, identity=identity)
