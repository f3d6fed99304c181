"""The logs role's knobs: one table; every bad value names the flag, the
variable and what is accepted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from contract.logs import ROLE
from contract.logvalues import (
    parse_files,
    parse_label_keys,
    parse_logs_path,
    parse_multiline,
    parse_sink,
    parse_size,
)
from sidecar.errors import UsageError
from sidecar.logs.settings import load


def test_sink_spellings() -> None:
    assert parse_sink("stdout").kind == "stdout"
    loki = parse_sink("loki+http://loki.logging:3100")
    assert (loki.kind, loki.url) == ("loki", "http://loki.logging:3100/loki/api/v1/push")
    assert parse_sink("loki+https://gw/loki/api/v1/push").url == "https://gw/loki/api/v1/push"
    es = parse_sink("elasticsearch+https://es:9200/app-logs")
    assert (es.kind, es.url, es.index) == (
        "elasticsearch",
        "https://es:9200/app-logs/_bulk",
        "app-logs",
    )
    http = parse_sink("https://collector:8443/v1/ingest?source=pods")
    assert (http.kind, http.url) == ("http", "https://collector:8443/v1/ingest?source=pods")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("syslog://x:514", "is not stdout, loki+http(s)"),
        ("loki+ftp://x", "is not stdout"),
        ("elasticsearch+http://es:9200", "needs an index name"),
        ("elasticsearch+http://es:9200/App", "needs an index name"),
        ("elasticsearch+http://es:9200/_x", "needs an index name"),
        ("https://user:pw@collector/in", "credentials in the URL"),
        ("http://collector:0/in", "is not stdout"),
        ("http://collector:99999/in", "invalid port"),
    ],
)
def test_bad_sinks_say_what_is_accepted(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_sink(value)
    assert says in str(caught.value)


def test_globs_stay_inside_the_logs_path() -> None:
    assert parse_files("*.log, audit/*.json") == ("*.log", "audit/*.json")
    for bad in ("", "/etc/*", "../x.log", "a/../../b", "**/*.log"):
        with pytest.raises(ValueError):
            parse_files(bad)


def test_paths_labels_sizes_and_patterns() -> None:
    assert parse_logs_path("/var/log/app/") == "/var/log/app"
    for bad in ("var/log", "/var/../etc", "", "/", "//"):
        with pytest.raises(ValueError):
            parse_logs_path(bad)
    assert parse_label_keys("app, app.kubernetes.io/version") == (
        "app",
        "app.kubernetes.io/version",
    )
    for bad in ("-app", "a/b/c", "app,app", "Upper.Case/x"):
        with pytest.raises(ValueError):
            parse_label_keys(bad)
    assert (parse_size("64Ki"), parse_size("1Mi"), parse_size("300")) == (65536, 1048576, 300)
    for bad in ("1.5Mi", "1G", "0", "-1"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert parse_multiline(r"^\d{4}-").match("2026-")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        parse_multiline("([")


def test_load_reads_flags_then_variables_then_defaults(tmp_path: Path) -> None:
    env = {
        "SIDECAR_LOGS_SINK": "loki+http://loki:3100",
        "SIDECAR_LOGS_LABELS": "app,team",
        "SIDECAR_LOGS_LABEL_0": "shop",
        "SIDECAR_LOGS_LABEL_1": "",
        "SIDECAR_POD_NAMESPACE": "prod",
        "SIDECAR_POD_NAME": "shop-1",
        "SIDECAR_NODE_NAME": "n1",
        "SIDECAR_LOGS_CONTAINER": "app",
    }
    settings = load(["--format", "json", "--files", "*.txt"], env)
    assert settings.sink.kind == "loki"
    assert settings.format == "json"
    assert settings.files == ("*.txt",)
    assert settings.path == "/var/log/app"
    assert settings.max_line == 32 * 1024
    assert settings.agent_addr == ("0.0.0.0", 15024)
    assert settings.identity.labels == (("app", "shop"),)  # an empty label is left out
    assert (settings.identity.namespace, settings.identity.pod) == ("prod", "shop-1")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--format", "xml"], "--format / SIDECAR_LOGS_FORMAT: 'xml' is not one of text, json"),
        (["--max-line", "100"], "--max-line / SIDECAR_LOGS_MAX_LINE: '100' is not from 256 bytes"),
        (["--batch-bytes", "1Ki"], "--batch-bytes / SIDECAR_LOGS_BATCH_BYTES: must be at least"),
        (["--long-lines", "drop"], "--long-lines / SIDECAR_LOGS_LONG_LINES"),
        (["--poll-interval", "0s"], "--poll-interval"),
        (["--sink", "kafka://k:9092"], "--sink / SIDECAR_LOGS_SINK"),
    ],
)
def test_bad_values_name_the_flag_and_the_variable(argv: list[str], says: str) -> None:
    with pytest.raises(UsageError) as caught:
        load(argv, {})
    assert says in str(caught.value)


def test_every_agent_knob_has_a_sidecar_variable_and_a_default_that_parses() -> None:
    for knob in ROLE.knobs:
        if knob.env is None:  # logs-sink-auth: the injector turns it into a mounted file
            continue
        assert knob.env.startswith("SIDECAR_")
        if knob.default is not None:
            knob.parse(knob.default)


def test_a_bad_value_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "logs", "--sink", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("sidecar logs: --sink / SIDECAR_LOGS_SINK: 'nope' is not")
    assert "Traceback" not in result.stderr


def test_an_unwritable_state_dir_exits_1_naming_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar",
            "logs",
            f"--state-dir={blocker}/state",
            f"--path={tmp_path}",
            "--agent-addr=127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "SIDECAR_LOGS_STATE_DIR" in result.stderr
    assert "writable volume" in result.stderr
    assert "Traceback" not in result.stderr
