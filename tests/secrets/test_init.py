"""``sidecar secrets --init``: files, modes, failures (against both backends where both serve)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest

from sidecar.backoff import Deadline
from sidecar.errors import SourceError
from sidecar.lifecycle import StopEvent
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.secrets.main import build
from sidecar.secrets.settings import load
from standins.vault import VaultStandIn
from tests.secrets.backends import Backend
from tests.secrets.conftest import args, run_init
from tests.support import free_port

SIDECAR = [sys.executable, "-m", "sidecar", "secrets"]
ALL = [
    {"name": "config", "path": "secret/data/app/config"},
    {"name": "config.json", "path": "secret/data/app/config", "template": "json"},
    {"name": "legacy", "path": "kv/app/legacy"},
    {
        "name": "db",
        "path": "database/creds/app",
        "template": "postgres://{{ data.username }}:{{ data.password }}@db/shop",
    },
]


def test_init_renders_every_kind_of_secret(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    result = run_init(["--deadline", "5s", *args(backend, token_file, tmp_path, ALL)])
    assert result.returncode == 0, result.stderr
    out = tmp_path / "secrets"
    assert (out / "config").read_text() == "api_key: k-123\nregion: eu\n"
    assert json.loads((out / "config.json").read_text()) == {"api_key": "k-123", "region": "eu"}
    assert (out / "legacy").read_text() == "ttl: 1h\nuser: old\n"
    username, password = (out / "db").read_text()[len("postgres://") :].split("@")[0].split(":")
    assert backend.database_login(username, password)  # the user really exists
    for name in ("config", "db"):
        assert (out / name).stat().st_mode & 0o777 == 0o444  # no fsGroup: world-readable
    assert backend.count("POST", "auth/kubernetes/login") == 1
    handoff = json.loads((tmp_path / "state" / "handoff.json").read_text())
    assert handoff["leases"]["db"]["lease_id"].startswith("database/creds/app/")
    assert (tmp_path / "state" / "handoff.json").stat().st_mode & 0o777 == 0o600
    token = handoff["token"]["value"]
    assert token not in result.stderr
    assert "k-123" not in result.stderr
    assert password not in result.stderr


def test_ten_secrets_with_file_group_and_mode(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    specs = [{"name": f"s{i}", "path": "secret/data/app/config"} for i in range(10)]
    specs[0]["mode"] = "0400"
    settings = load(
        args(
            backend,
            token_file,
            tmp_path,
            specs,
            "--init",
            "--file-group",
            str(__import__("os").getgid()),
        ),
        environ={},
    )
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))
    agent.render_all(Deadline.after(10), StopEvent())
    out = tmp_path / "secrets"
    assert sorted(p.name for p in out.iterdir()) == sorted(s["name"] for s in specs)
    assert (out / "s0").stat().st_mode & 0o777 == 0o400
    assert (out / "s1").stat().st_mode & 0o777 == 0o440


def test_missing_template_key_names_it(backend: Backend, token_file: Path, tmp_path: Path) -> None:
    spec = [{"name": "c", "path": "secret/data/app/config", "template": "{{ data.password }}"}]
    result = run_init(["--deadline", "5s", *args(backend, token_file, tmp_path, spec)])
    assert result.returncode == 1
    assert "template uses key 'password'" in result.stderr
    assert "it has: api_key, region" in result.stderr
    assert not (tmp_path / "secrets" / "c").exists()


def test_vault_down_fails_within_the_deadline(jwt_file: Path, tmp_path: Path) -> None:
    addr = f"http://127.0.0.1:{free_port()}"
    spec = [{"name": "c", "path": "secret/data/app/config"}]
    started = time.monotonic()
    result = subprocess.run(
        [
            *SIDECAR,
            "--init",
            "--deadline",
            "2s",
            "--vault-addr",
            addr,
            "--role",
            "app",
            "--token-file",
            str(jwt_file),
            "--secrets",
            json.dumps(spec),
            "--secrets-dir",
            str(tmp_path / "s"),
            "--state-dir",
            str(tmp_path / "st"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sidecar secrets: secrets not rendered by the deadline (c): ")
    assert f"Vault at {addr} unreachable" in last


def test_role_rejected_and_permission_denied_are_named(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    spec = [{"name": "c", "path": "secret/data/app/config"}]
    settings = load(
        args(backend, token_file, tmp_path, spec, "--init", "--role", "nope"), environ={}
    )
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))
    with pytest.raises(SourceError, match="role 'nope' rejected by auth/kubernetes"):
        agent.render_all(Deadline.after(3), StopEvent())
    spec = [{"name": "c", "path": "secret/data/other/thing"}]
    settings = load(args(backend, token_file, tmp_path, spec, "--init"), environ={})
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))
    with pytest.raises(SourceError, match="permission denied for path secret/data/other/thing"):
        agent.render_all(Deadline.after(3), StopEvent())


def test_sealed_and_standby_are_retried_until_they_clear(
    vault: VaultStandIn, jwt_file: Path, tmp_path: Path
) -> None:
    """Stand-in only: a dev server has no standby node. (Sealed against both:
    test_faults.test_init_waits_for_vault_to_come_up.)"""
    vault.sealed = True
    spec = [{"name": "c", "path": "secret/data/app/config"}]
    settings = load(args(vault, jwt_file, tmp_path, spec, "--init"), environ={})
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))
    stop = StopEvent()

    def unseal_after_two_refusals() -> None:
        from tests.support import wait_for

        wait_for(lambda: vault.count("POST", "/v1/auth/") >= 2, what="two sealed answers")
        vault.sealed = False
        vault.standby = True
        wait_for(lambda: vault.count("POST", "/v1/auth/") >= 3, what="a standby answer")
        vault.standby = False

    import threading

    helper = threading.Thread(target=unseal_after_two_refusals)
    helper.start()
    agent.render_all(Deadline.after(30), stop)
    helper.join()
    assert (tmp_path / "secrets" / "c").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[]", "non-empty list"),
        ('[{"name": "../x", "path": "secret/data/a"}]', "cannot be a file name"),
        ('[{"name": "a", "path": "secret/data/a", "mode": "0666"}]', "lets others write"),
        ('[{"name": "a", "path": "a"}, {"name": "a", "path": "b"}]', "repeated: a"),
        ("{", "not JSON"),
    ],
)
def test_bad_secret_specs_are_usage_errors(value: str, message: str) -> None:
    from sidecar.errors import UsageError

    with pytest.raises(UsageError, match=message):
        load(["--vault-addr", "http://v:8200", "--role", "r", "--secrets", value], environ={})


def test_paths_the_injector_accepts_and_versions_are_read(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    backend.put_kv2("app/team@eu=1+2", {"k": "first"})
    backend.put_kv2("app/team@eu=1+2", {"k": "second"})
    spec = [
        {"name": "latest", "path": "secret/data/app/team@eu=1+2"},
        {"name": "pinned", "path": "/secret/data/app/team@eu=1+2?version=1"},
    ]
    settings = load(args(backend, token_file, tmp_path, spec, "--init"), environ={})
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))
    agent.render_all(Deadline.after(5), StopEvent())
    assert (tmp_path / "secrets" / "latest").read_text() == "k: second\n"
    assert (tmp_path / "secrets" / "pinned").read_text() == "k: first\n"


def test_parent_segments_are_refused() -> None:
    from sidecar.errors import UsageError

    value = '[{"name": "a", "path": "secret/data/../sys/x"}]'
    with pytest.raises(UsageError, match="is not a Vault API path"):
        load(["--vault-addr", "http://v:8200", "--role", "r", "--secrets", value], environ={})
