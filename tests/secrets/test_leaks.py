"""No secret value, Vault token or service account token in anything the
secrets role prints, whatever the template does.

``sidecar secrets --init`` runs as a real process against the real Vault
and the stand-in (the real one's tokens read from its raw audit log) with
hostile templates (each looks a key up by a secret value, includes a
template named by one, reaches a forbidden attribute named by one, or makes a
filter fail on one). Everything it prints (stdout and stderr: what
``terminationMessagePolicy: FallbackToLogsOnError`` copies into the pod's
status) is searched for every secret value, the tokens Vault issued and the
JWT the agent logged in with. The refresher gets all templates at once and
its logs and /metrics are searched the same way.

The search is shown to work: the last test plants the leak the templates
module once had (the missing key's name taken from Jinja's message) and the
same search finds the password.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.secrets.backends import Backend
from tests.secrets.conftest import Refresher, args
from tests.support import wait_for

SECRET = {
    "username": "svc-user-9c1d2e",
    "password": "S3cr3t-P4ss-7f3a",
    "private": "_Priv4te-Val-51b0",  # a leading _ makes the sandbox refuse it as a name
    "dsn": "postgres://svc:Hunter2-x8@db:5432/app",
}
HOSTILE = {
    "key-named-by-value": "{{ data[data.password] }}",
    "empty-dict-by-value": "{{ {}[data.password] }}",
    "nested-by-value": "{{ data.username[data.password] }}",
    "map-attribute": "{{ data | dictsort | map(attribute=data.password) | join }}",
    "select-attribute": "{{ data | selectattr(data.password) | list }}",
    "include": "{% include data.password %}",
    "extends": "{% extends data.dsn %}",
    "import": "{% import data.password as m %}{{ m.x }}",
    "unsafe-attribute": "{{ data.password | attr(data.private) }}",
    "bad-format": '{{ "%d" | format(data.password) }}',
    "range": "{{ range(data.password) }}",
    "arithmetic": "{{ data.password + 1 }}",
    "method": "{{ data.dsn.index(data.password) }}",
}
INIT = [sys.executable, "-m", "sidecar", "secrets", "--init", "--deadline", "5s"]


@pytest.fixture
def hostile_vault(backend: Backend) -> Backend:
    backend.put_kv2("app/db", SECRET)
    return backend


def secrets_for(names: list[str]) -> list[dict[str, str]]:
    return [{"name": n, "path": "secret/data/app/db", "template": HOSTILE[n]} for n in names]


def forbidden(vault: Backend, token_file: Path) -> list[str]:
    """Everything that must never be printed."""
    return [*SECRET.values(), *vault.tokens(), token_file.read_text().strip()]


def leaks(output: str, vault: Backend, token_file: Path) -> list[str]:
    return [value for value in forbidden(vault, token_file) if value and value in output]


def run_init(command: list[str], argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *argv], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_init_prints_no_secret_or_token(
    hostile_vault: Backend, token_file: Path, tmp_path: Path, name: str
) -> None:
    argv = args(hostile_vault, token_file, tmp_path, secrets_for([name]))
    argv[argv.index("--log-level") + 1] = "debug"
    result = run_init(INIT, argv)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"secret {name}: template" in output, output
    assert len(hostile_vault.tokens()) == 1  # it did log in: there is a token to leak
    assert leaks(output, hostile_vault, token_file) == [], output
    assert not (tmp_path / "secrets" / name).exists()


def test_refresher_logs_and_metrics_hold_no_secret_or_token(
    hostile_vault: Backend, token_file: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    names = sorted(HOSTILE)
    argv = args(hostile_vault, token_file, tmp_path, secrets_for(names))
    argv[argv.index("--log-level") + 1] = "debug"
    with Refresher(argv, wait_ready=False) as agent:
        wait_for(
            lambda: f"sidecar_secrets_render_failures_total {len(names)}" in agent.metrics(),
            timeout=20,
            what="a render failure counted for every hostile template",
        )
        metrics = agent.metrics()
    out, err = capfd.readouterr()
    for name in names:
        assert f"secret {name}: template" in err
    assert leaks(out + err + metrics, hostile_vault, token_file) == []


def test_the_search_finds_a_planted_leak(
    hostile_vault: Backend, token_file: Path, tmp_path: Path
) -> None:
    """The old behaviour planted back: Jinja's own message as the error."""
    plant = (
        "import sys\n"
        "import sidecar.secrets.templates as t\n"
        "t._undefined = lambda spec, source, data, message: f'secret {spec.name}: {message}'\n"
        "from sidecar.cli import main\n"
        "sys.exit(main(['secrets', *sys.argv[1:]]))\n"
    )
    argv = args(hostile_vault, token_file, tmp_path, secrets_for(["key-named-by-value"]))
    result = run_init([sys.executable, "-c", plant], ["--init", "--deadline", "5s", *argv])
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert leaks(output, hostile_vault, token_file) == [SECRET["password"]], output


def test_hostile_templates_are_all_kinds_of_failure() -> None:
    """Each hostile template fails in the renderer (not by a typo in this file)."""
    from sidecar.errors import OutputError
    from sidecar.secrets.settings import SecretSpec
    from sidecar.secrets.templates import render

    for name, template in HOSTILE.items():
        with pytest.raises(OutputError) as caught:
            render(SecretSpec(name, "secret/data/app/db", template, None), dict(SECRET))
        assert not [v for v in SECRET.values() if v in str(caught.value)], str(caught.value)
