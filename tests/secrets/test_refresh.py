"""The refresher: renewals on time, re-fetches, re-login, reloads, hand-off."""

from __future__ import annotations

import json
import os
import threading
from io import StringIO
from pathlib import Path

import pytest

from sidecar.backoff import Deadline
from sidecar.lifecycle import StopEvent
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.secrets.main import build, run
from sidecar.secrets.settings import load
from standins.vault import VaultStandIn
from tests.secrets.backends import Backend
from tests.secrets.conftest import Refresher, args, credentials
from tests.support import ReloadApp, wait_for


def test_renewable_lease_is_renewed_at_two_thirds(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    backend.add_database_role("app", default_ttl=3, max_ttl=600)
    spec = [{"name": "db", "path": "database/creds/app"}]
    with Refresher(args(backend, token_file, tmp_path, spec)) as agent:
        wait_for(
            lambda: backend.count("PUT", "sys/leases/renew") >= 2, timeout=15, what="two renewals"
        )
        issued = backend.times("GET", "database/creds/app")[0]
        first, second = backend.times("PUT", "sys/leases/renew")[:2]
        assert 1.5 <= first - issued <= 2.7  # 2/3 of 3 s, before expiry
        assert 1.5 <= second - first <= 2.7
        assert backend.count("GET", "database/creds/app") == 1  # same credentials kept
        assert 'sidecar_secrets_renewals_total{kind="lease"}' in agent.metrics()
        username, password = credentials(tmp_path / "secrets" / "db")
        assert backend.database_login(username, password)  # still valid after two renewals


def test_non_renewable_lease_is_refetched_before_expiry(
    vault: VaultStandIn, jwt_file: Path, tmp_path: Path, app: ReloadApp
) -> None:
    """Stand-in only: the engines whose GET answers a non-renewable lease (AWS
    STS, ...) need a cloud; the database engine's leases are renewable."""
    vault.add_database_role("app", default_ttl=2, max_ttl=600, renewable=False)
    spec = [{"name": "db", "path": "database/creds/app"}]
    with Refresher(args(vault, jwt_file, tmp_path, spec, "--reload", app.url)):
        wait_for(
            lambda: vault.count("GET", "/v1/database/creds/app") >= 2, timeout=15, what="re-fetch"
        )
        first, second = vault.times("GET", "/v1/database/creds/app")[:2]
        assert 1.2 <= second - first < 2.0  # ~85% of 2 s, before the lease ends
        assert vault.count("PUT", "/v1/sys/leases/renew") == 0
        wait_for(lambda: app.calls >= 1, what="reload after new credentials")


def test_capped_renewal_leads_to_a_refetch(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    backend.add_database_role("app", default_ttl=3, max_ttl=4)
    spec = [{"name": "db", "path": "database/creds/app"}]
    with Refresher(args(backend, token_file, tmp_path, spec)):
        first = credentials(tmp_path / "secrets" / "db")
        wait_for(
            lambda: backend.count("GET", "database/creds/app") >= 2,
            timeout=15,
            what="re-fetch after the capped renewal",
        )
        assert backend.count("PUT", "sys/leases/renew") == 1
        wait_for(lambda: credentials(tmp_path / "secrets" / "db") != first, what="new file")
        assert backend.database_login(*credentials(tmp_path / "secrets" / "db"))


def test_expired_token_leads_to_exactly_one_relogin(
    backend: Backend, token_file: Path, tmp_path: Path, app: ReloadApp
) -> None:
    spec = [{"name": "config", "path": "secret/data/app/config"}]
    argv = args(backend, token_file, tmp_path, spec, "--kv-interval", "1s", "--reload", app.url)
    with Refresher(argv) as agent:
        assert backend.count("POST", "auth/kubernetes/login") == 1
        reads = backend.count("GET", "secret/data/app/config")
        backend.expire_tokens()
        wait_for(
            lambda: backend.count("GET", "secret/data/app/config") >= reads + 3,
            timeout=15,
            what="reads after the expiry",
        )
        assert backend.count("POST", "auth/kubernetes/login") == 2
        assert "sidecar_secrets_relogins_total 1" in agent.metrics()
        assert app.calls == 0  # unchanged re-reads never reload the app
        backend.put_kv2("app/config", {"api_key": "k-456", "region": "eu"})
        wait_for(lambda: app.calls == 1, what="one reload for the change")
        wait_for(
            lambda: backend.count("GET", "secret/data/app/config") >= reads + 6,
            timeout=15,
            what="more unchanged reads",
        )
        assert app.calls == 1
        assert (tmp_path / "secrets" / "config").read_text().startswith("api_key: k-456")


def test_kv1_ttl_sets_how_often_it_is_read_again(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    """KV v1 answers a secret's ttl as lease_duration without a lease: a hint to
    check back that often. Sooner than --kv-interval, it wins."""
    backend.put_kv1("app/short", {"user": "u", "ttl": "2s"})
    spec = [
        {"name": "short", "path": "kv/app/short"},
        {"name": "legacy", "path": "kv/app/legacy"},  # ttl 1h
        {"name": "config", "path": "secret/data/app/config"},  # KV v2: no hint
    ]
    with Refresher(args(backend, token_file, tmp_path, spec, "--kv-interval", "1h")):
        wait_for(lambda: backend.count("GET", "kv/app/short") >= 3, timeout=15, what="re-reads")
        first, second, third = backend.times("GET", "kv/app/short")[:3]
        assert 1.8 <= second - first <= 3.0
        assert 1.8 <= third - second <= 3.0
        assert backend.count("GET", "kv/app/legacy") == 1
        assert backend.count("GET", "secret/data/app/config") == 1


def test_refresher_adopts_the_init_handoff(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    backend.add_database_role("app", default_ttl=30, max_ttl=600)
    spec = [{"name": "db", "path": "database/creds/app"}]
    init = load(args(backend, token_file, tmp_path, spec, "--init"), environ={})
    assert run(init, StopEvent()) == 0
    creds = (tmp_path / "secrets" / "db").read_text()
    with Refresher(args(backend, token_file, tmp_path, spec, "--revoke-on-exit", "true")):
        assert backend.count("POST", "auth/kubernetes/login") == 1  # token reused
        assert backend.count("GET", "database/creds/app") == 1  # no second credentials
        assert (tmp_path / "secrets" / "db").read_text() == creds
    assert backend.count("POST", "auth/token/revoke-self") == 1
    # Revoking the token revoked the lease it created: the database user is gone.
    username, password = credentials(tmp_path / "secrets" / "db")
    wait_for(lambda: not backend.database_user_exists(username), what="the user dropped")
    assert not backend.database_login(username, password)


def test_tokens_and_values_never_reach_the_log(
    backend: Backend, token_file: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = [{"name": "config", "path": "secret/data/app/config"}]
    argv = args(backend, token_file, tmp_path, spec, "--kv-interval", "1s", "--log-level", "debug")
    tokens = []
    with Refresher(argv):
        wait_for(lambda: (tmp_path / "state" / "handoff.json").exists(), what="a hand-off")
        tokens.append(json.loads((tmp_path / "state" / "handoff.json").read_text())["token"])
        backend.expire_tokens()
        wait_for(lambda: backend.count("POST", "auth/kubernetes/login") == 2, what="relogin")
    tokens.append(json.loads((tmp_path / "state" / "handoff.json").read_text())["token"])
    logged = capfd.readouterr().err
    assert "token refused; logging in again" in logged
    assert tokens[0]["value"] != tokens[1]["value"]
    for token in tokens:
        assert token["value"] not in logged
    assert "k-123" not in logged
    assert token_file.read_text() not in logged


def test_reader_never_sees_a_partial_secret_across_1000_rewrites(
    vault: VaultStandIn, jwt_file: Path, tmp_path: Path
) -> None:
    """1,000 changes fetched and written by the agent while another thread reads.
    Stand-in only: the atomic write is the agent's; 2,000 calls to a real
    Vault would add time and nothing else."""
    spec = [{"name": "big", "path": "secret/data/app/big", "template": "json", "mode": "0440"}]
    vault.put_kv2("app/big", {"password": "0" * 4000})
    settings = load(args(vault, jwt_file, tmp_path, spec, "--init"), environ={})
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))
    agent.render_all(Deadline.after(10), StopEvent())
    target = tmp_path / "secrets" / "big"
    stop = threading.Event()
    reads: list[int] = []
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                content = target.read_bytes()
                mode = os.stat(target).st_mode & 0o777
                value = json.loads(content)["password"]
            except (OSError, ValueError, KeyError) as exc:
                bad.append(repr(exc))
                continue
            if len(value) != 4000 or len(set(value)) != 1 or mode != 0o440:
                bad.append(f"{len(value)} chars, mode {mode:o}")
            reads.append(int(value[0]))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 1001):
            vault.put_kv2("app/big", {"password": str(i % 10) * 4000})
            assert agent.fetch(agent.tracked[0]) is True
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert len(set(reads)) > 1  # the reader really saw the rewrites
    assert sorted(p.name for p in target.parent.iterdir()) == ["big"]  # no temp files left


def test_refresher_is_ready_on_the_init_files_while_vault_is_down(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    spec = [{"name": "config", "path": "secret/data/app/config"}]
    init = load(args(backend, token_file, tmp_path, spec, "--init"), environ={})
    assert run(init, StopEvent()) == 0
    backend.stop()
    with Refresher(args(backend, token_file, tmp_path, spec, "--kv-interval", "1s")) as agent:
        assert agent.ready() == 200  # the app can read the file: the pod stays ready
        wait_for(
            lambda: 'sidecar_secrets_fetches_total{outcome="error"}' in agent.metrics(),
            what="a failed re-read",
        )
        assert agent.ready() == 200
        backend.start()  # a real dev server comes back empty: set up again
        backend.put_kv2("app/config", {"api_key": "k-789", "region": "eu"})
        wait_for(
            lambda: "k-789" in (tmp_path / "secrets" / "config").read_text(),
            timeout=15,
            what="the re-read once Vault is back",
        )
