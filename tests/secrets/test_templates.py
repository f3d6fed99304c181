"""Rendering secrets to file content: default lines, json, sandboxed Jinja2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.errors import OutputError
from sidecar.secrets.settings import SecretSpec
from sidecar.secrets.templates import render
from tests.secrets.backends import Backend
from tests.secrets.conftest import Refresher, args
from tests.support import wait_for

DATA = {"username": "u", "password": "s3cr3t-value", "port": 5432, "tags": ["a", "b"]}


def spec(template: str | None) -> SecretSpec:
    return SecretSpec("db", "database/creds/app", template, None)


def test_default_renders_sorted_key_value_lines() -> None:
    assert render(spec(None), DATA) == (
        b'password: s3cr3t-value\nport: 5432\ntags: ["a", "b"]\nusername: u\n'
    )


def test_json_renders_the_data_object() -> None:
    assert json.loads(render(spec("json"), DATA)) == DATA


def test_custom_template_sees_data() -> None:
    text = "postgres://{{ data.username }}:{{ data.password }}@db:{{ data.port }}/x"
    assert render(spec(text), DATA) == b"postgres://u:s3cr3t-value@db:5432/x"
    assert render(spec("{% for t in data.tags %}{{ t }};{% endfor %}"), DATA) == b"a;b;"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ data.host }}", "template uses key 'host', which the secret at database/creds/app"),
        ("{{ data['host'] }}", "template uses key 'host'"),
        ("{{ password }}", "template uses 'password', which is not defined; the secret's keys"),
        ("{{ data.username.__class__ }}", "template error: it reaches an attribute the sandbox"),
        ("{{ data.username ~ }", "template error: unexpected '}'"),
        ("{{ data.password + 1 }}", "template failed with TypeError (message withheld"),
        ("{{ data.password.index('zzz') }}", "template failed with ValueError"),
    ],
)
def test_template_errors_name_the_problem_never_a_value(template: str, message: str) -> None:
    with pytest.raises(OutputError, match=r"^secret db: ") as caught:
        render(spec(template), DATA)
    assert message in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
    if "key 'host'" in message:
        assert "(it has: password, port, tags, username)" in str(caught.value)


def test_jinja2_is_imported_only_for_custom_templates() -> None:
    code = (
        "import sys\n"
        "from sidecar.secrets.main import build\n"
        "from sidecar.secrets.templates import render\n"
        "from sidecar.secrets.settings import SecretSpec\n"
        "render(SecretSpec('a', 'p', None, None), {'k': 'v'})\n"
        "render(SecretSpec('a', 'p', 'json', None), {'k': 'v'})\n"
        "print('jinja2' in sys.modules)\n"
        "render(SecretSpec('a', 'p', '{{ data.k }}', None), {'k': 'v'})\n"
        "print('jinja2' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True"]


def test_refresher_counts_render_failures_and_is_not_ready(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    bad = [{"name": "c", "path": "secret/data/app/config", "template": "{{ data.nope }}"}]
    with Refresher(args(backend, token_file, tmp_path, bad), wait_ready=False) as agent:
        wait_for(
            lambda: "sidecar_secrets_render_failures_total 2" in agent.metrics(),
            timeout=15,
            what="two counted render failures",
        )
        assert agent.ready() == 503
        assert not (tmp_path / "secrets" / "c").exists()
