"""``sidecar logs`` settings: flags and ``SIDECAR_*`` variables, read once,
from the role's rows in ``contract.logs`` (the injector validates the pod's
annotations with the same parsers).

The pod's identity comes from variables the injector renders from the
downward API: namespace, pod, node, the app containers, and one
``SIDECAR_LOGS_LABEL_<i>`` per key of ``SIDECAR_LOGS_LABELS``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from contract import config
from contract import logs as rows
from contract.common import LOG_LEVEL
from contract.logs import LABEL_VALUE_ENV
from contract.logvalues import SinkSpec
from contract.values import LogLevel
from sidecar.errors import UsageError
from sidecar.options import read_knobs, role_parser

__all__ = ["Identity", "LogsSettings", "SinkSpec", "load"]


@dataclass(frozen=True)
class Identity:
    """What every record says about where it comes from."""

    namespace: str = ""
    pod: str = ""
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
    namespace: str
    pod_name: str
    node_name: str
    container: str
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
    agent_addr: tuple[str, int]
    log_level: LogLevel
    identity: Identity


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    return role_parser(rows.ROLE, environ, __doc__ or "")


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> LogsSettings:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(list(argv))
    v = read_knobs(args, rows.ROLE.knobs)
    max_line = v.require(rows.MAX_LINE)
    if v.require(rows.BATCH_BYTES) < max_line:
        raise UsageError(
            f"{rows.BATCH_BYTES.flag} / {rows.BATCH_BYTES.env}: must be at least "
            f"{rows.MAX_LINE.flag} ({max_line} bytes): the longest record fits in a batch"
        )
    keys = v.get(rows.LABEL_KEYS) or ()
    labels = tuple(
        (key, env.get(LABEL_VALUE_ENV.format(index), ""))
        for index, key in enumerate(keys)
        if env.get(LABEL_VALUE_ENV.format(index), "")
    )
    text = {k: v.get(k) or "" for k in (config.NAMESPACE, rows.POD_NAME, rows.NODE_NAME)}
    container = v.get(rows.CONTAINER) or ""
    identity = Identity(
        text[config.NAMESPACE], text[rows.POD_NAME], text[rows.NODE_NAME], container, labels
    )
    return LogsSettings(
        path=v.require(rows.PATH),
        files=v.require(rows.FILES),
        sink=v.require(rows.SINK),
        format=v.require(rows.FORMAT),
        multiline=v.get(rows.MULTILINE),
        label_keys=keys,
        namespace=text[config.NAMESPACE],
        pod_name=text[rows.POD_NAME],
        node_name=text[rows.NODE_NAME],
        container=container,
        state_dir=v.require(rows.STATE_DIR),
        max_line=max_line,
        long_lines=v.require(rows.LONG_LINES),
        flush_timeout=v.require(rows.FLUSH_TIMEOUT),
        batch_bytes=v.require(rows.BATCH_BYTES),
        batch_wait=v.require(rows.BATCH_WAIT),
        buffer_batches=v.require(rows.BUFFER_BATCHES),
        compress=v.require(rows.GZIP),
        sink_timeout=v.require(rows.SINK_TIMEOUT),
        sink_ca=v.get(rows.SINK_CA),
        sink_auth_file=v.get(rows.SINK_AUTH_FILE),
        loki_tenant=v.get(rows.LOKI_TENANT) or "",
        poll=v.require(rows.POLL),
        rotate_wait=v.require(rows.ROTATE_WAIT),
        drain_timeout=v.require(rows.DRAIN_TIMEOUT),
        max_files=v.require(rows.MAX_FILES),
        agent_addr=v.require(rows.ROLE.knob("agent_addr")),
        log_level=v.require(LOG_LEVEL),
        identity=identity,
    )
