"""The logs role's rows (``sidecar logs``): the app's log files shipped at
least once (the kinds of value only this role takes: ``contract.logvalues``).

``logs-path`` asks for the role: the injector mounts a shared volume there
in the app containers (read-write) and in the agent (read-only).
"""

from __future__ import annotations

import re
from pathlib import Path

from contract import common, config, layout, values
from contract.common import agent
from contract.knobs import Knob, Role, Value
from contract.logvalues import (
    FILES_HELP,
    LABELS_HELP,
    LOGS_PATH,
    MULTILINE_HELP,
    SECRET_KEY_HELP,
    SINK_HELP,
    SIZE_HELP,
    SecretKey,
    SinkSpec,
    bounded,
    parse_files,
    parse_label_keys,
    parse_multiline,
    parse_secret_key,
    parse_sink,
    size_between,
)
from contract.values import choice

PATH: Knob[str] = Knob(
    "path",
    LOGS_PATH,
    "a directory the app writes its log files to, shared with the logs agent; asks for the "
    "logs role",
    env="SIDECAR_LOGS_PATH",
    flag="--path",
    default=layout.LOGS_PATH,
    annotation="logs-path",
    example="/var/log/shop",
    pod_default="none",
    id="logs_path",
)
FILES: Knob[tuple[str, ...]] = Knob(
    "files",
    Value(FILES_HELP, parse_files, ",".join),
    "which files under the logs path are shipped",
    env="SIDECAR_LOGS_FILES",
    flag="--files",
    default="*.log",
    annotation="logs-files",
    example="*.log,audit/*.json",
    profile="logs.files",
    id="logs_files",
)
SINK: Knob[SinkSpec] = Knob(
    "sink",
    Value(SINK_HELP, parse_sink, lambda s: s.text),
    "where the records go: stdout as JSON lines (node collectors, `kubectl logs`), Loki's push "
    "API, Elasticsearch's _bulk API or any HTTP endpoint taking NDJSON",
    env="SIDECAR_LOGS_SINK",
    flag="--sink",
    default="stdout",
    annotation="logs-sink",
    example="loki+http://loki.logging:3100",
    profile="logs.sink",
    id="logs_sink",
)
FORMAT: Knob[str] = Knob(
    "format",
    choice("text", "json"),
    "text: a record per line; json: each line's JSON object becomes the record's fields",
    env="SIDECAR_LOGS_FORMAT",
    flag="--format",
    default="text",
    annotation="logs-format",
    example="json",
    profile="logs.format",
    id="logs_format",
)
MULTILINE: Knob[re.Pattern[str]] = Knob(
    "multiline",
    Value(MULTILINE_HELP, parse_multiline, lambda p: p.pattern),
    "a line that does not match starts no record: it is added to the one before (stack traces)",
    env="SIDECAR_LOGS_MULTILINE",
    flag="--multiline",
    annotation="logs-multiline",
    example="^\\d{4}-\\d{2}-\\d{2}",
    id="logs_multiline",
)
LABEL_KEYS: Knob[tuple[str, ...]] = Knob(
    "label_keys",
    Value(LABELS_HELP, parse_label_keys, ",".join),
    "pod labels every record carries (the injector adds each as a downward API variable)",
    env="SIDECAR_LOGS_LABELS",
    flag="--labels",
    annotation="logs-labels",
    example="app,app.kubernetes.io/version",
    profile="logs.labels",
    id="logs_labels",
)
POD_NAME = common.POD_NAME  # shared with the proxy's mesh identity
NODE_NAME: Knob[str] = Knob(
    "node_name",
    values.TEXT,
    "the node's name in every record; the injector renders it (downward API)",
    env="SIDECAR_NODE_NAME",
    flag="--node-name",
)
CONTAINER: Knob[str] = Knob(
    "container",
    values.TEXT,
    "the app containers writing the files, in every record; the injector renders them",
    env="SIDECAR_LOGS_CONTAINER",
    flag="--container",
    id="logs_container",
)
STATE_DIR: Knob[Path] = Knob(
    "state_dir",
    values.DIRECTORY,
    "where positions are checkpointed (a volume that outlives the container)",
    env="SIDECAR_LOGS_STATE_DIR",
    flag="--state-dir",
    default=layout.LOGS_STATE_DIR,
    id="logs_state_dir",
)
MAX_LINE: Knob[int] = Knob(
    "max_line",
    Value(SIZE_HELP + ", from 256 to 1Mi", size_between(256, 1024 * 1024)),
    "the longest record in bytes; longer lines are split or truncated, and marked",
    env="SIDECAR_LOGS_MAX_LINE",
    flag="--max-line",
    default="32Ki",
)
LONG_LINES: Knob[str] = Knob(
    "long_lines",
    choice("split", "truncate"),
    "what happens to a line longer than the limit: split into marked parts, or truncated "
    "with the count of bytes dropped (never dropped silently)",
    env="SIDECAR_LOGS_LONG_LINES",
    flag="--long-lines",
    default="split",
)
FLUSH_TIMEOUT: Knob[float] = Knob(
    "flush_timeout",
    values.DURATION,
    "how long a last line without its newline (or an open multiline record) waits",
    env="SIDECAR_LOGS_FLUSH_TIMEOUT",
    flag="--flush-timeout",
    default="5s",
)
BATCH_BYTES: Knob[int] = Knob(
    "batch_bytes",
    Value(SIZE_HELP + ", at most 16Mi", size_between(1, 16 * 1024 * 1024)),
    "about the largest batch (records before compression; one read of 4 KiB may pass it); "
    "at least the longest record",
    env="SIDECAR_LOGS_BATCH_BYTES",
    flag="--batch-bytes",
    default="512Ki",
)
BATCH_WAIT: Knob[float] = Knob(
    "batch_wait",
    values.DURATION,
    "the longest a record waits for its batch to fill while the sink is busy",
    env="SIDECAR_LOGS_BATCH_WAIT",
    flag="--batch-wait",
    default="1s",
)
BUFFER_BATCHES: Knob[int] = Knob(
    "buffer_batches",
    bounded(1, 64),
    "closed batches held while the sink is busy; then reading stops (the files are the buffer)",
    env="SIDECAR_LOGS_BUFFER_BATCHES",
    flag="--buffer-batches",
    default="2",
)
GZIP: Knob[bool] = Knob(
    "compress",
    values.BOOL,
    "gzip request bodies (HTTP sinks)",
    env="SIDECAR_LOGS_GZIP",
    flag="--gzip",
    default="true",
)
SINK_TIMEOUT: Knob[float] = Knob(
    "sink_timeout",
    values.POSITIVE_DURATION,
    "socket timeout of a request to the sink",
    env="SIDECAR_LOGS_SINK_TIMEOUT",
    flag="--sink-timeout",
    default="30s",
)
SINK_CA: Knob[Path] = Knob(
    "sink_ca",
    values.FILE,
    "PEM CA bundle that verifies an https sink",
    env="SIDECAR_LOGS_SINK_CA",
    flag="--sink-ca",
    doc_default="the system bundle",
)
SINK_AUTH_FILE: Knob[Path] = Knob(
    "sink_auth_file",
    values.FILE,
    "a file holding the Authorization header value (e.g. Bearer ..., ApiKey ...), re-read "
    "for every request; mount it from a Secret",
    env="SIDECAR_LOGS_SINK_AUTH_FILE",
    flag="--sink-auth-file",
)
SINK_AUTH: Knob[SecretKey] = Knob(
    "sink_auth",
    Value(SECRET_KEY_HELP, parse_secret_key, str),
    "the Authorization header value for the sink, from a Secret of the pod's namespace: the "
    "injector mounts that key in the logs container only and points --sink-auth-file at it",
    annotation="logs-sink-auth",
    example="loki-credentials/authorization",
    profile="logs.sinkAuth",
    id="logs_sink_auth",
)
LOKI_TENANT: Knob[str] = Knob(
    "loki_tenant",
    values.TEXT,
    "Loki sinks: the tenant (X-Scope-OrgID) of a multi-tenant Loki",
    env="SIDECAR_LOGS_LOKI_TENANT",
    flag="--loki-tenant",
)
POLL: Knob[float] = Knob(
    "poll",
    values.POSITIVE_DURATION,
    "how often idle files and the directory are looked at",
    env="SIDECAR_LOGS_POLL_INTERVAL",
    flag="--poll-interval",
    default="250ms",
)
ROTATE_WAIT: Knob[float] = Knob(
    "rotate_wait",
    values.DURATION,
    "how long a rotated or deleted file is still read after its last growth",
    env="SIDECAR_LOGS_ROTATE_WAIT",
    flag="--rotate-wait",
    default="5s",
)
DRAIN_TIMEOUT: Knob[float] = Knob(
    "drain_timeout",
    values.DURATION,
    "on SIGTERM, how long the agent keeps shipping what is left; the injector renders the "
    "pod's terminationGracePeriodSeconds less 2s when the pod sets it",
    env="SIDECAR_LOGS_DRAIN_TIMEOUT",
    flag="--drain-timeout",
    default="25s",
    id="logs_drain_timeout",
)
MAX_FILES: Knob[int] = Knob(
    "max_files",
    bounded(1, 1024),
    "most files followed at once",
    env="SIDECAR_LOGS_MAX_FILES",
    flag="--max-files",
    default="64",
)

ROLE = Role(
    "logs",
    "the app's log files shipped at least once: rotation, restarts and back-pressure handled",
    layout.LOGS_AGENT_PORT,
    (
        *agent(layout.LOGS_AGENT_PORT),
        PATH,
        FILES,
        SINK,
        FORMAT,
        MULTILINE,
        LABEL_KEYS,
        config.NAMESPACE,
        POD_NAME,
        NODE_NAME,
        CONTAINER,
        STATE_DIR,
        MAX_LINE,
        LONG_LINES,
        FLUSH_TIMEOUT,
        BATCH_BYTES,
        BATCH_WAIT,
        BUFFER_BATCHES,
        GZIP,
        SINK_TIMEOUT,
        SINK_CA,
        SINK_AUTH,
        SINK_AUTH_FILE,
        LOKI_TENANT,
        POLL,
        ROTATE_WAIT,
        DRAIN_TIMEOUT,
        MAX_FILES,
    ),
    trigger=PATH,
)
# One variable per key of SIDECAR_LOGS_LABELS, in order, from the downward API.
LABEL_VALUE_ENV = "SIDECAR_LOGS_LABEL_{}"
