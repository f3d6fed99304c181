"""Faults a real Vault produces on demand, met by a running refresher:
sealed, restarted (every token and lease gone), a policy removed, a lease
revoked. Each runs against the real Vault and the stand-in alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.secrets.backends import Backend
from tests.secrets.conftest import Refresher, args, credentials
from tests.support import ReloadApp, wait_for

KV = {"name": "config", "path": "secret/data/app/config"}
DB = {"name": "db", "path": "database/creds/app"}


def lease_id(state_dir: Path, name: str) -> str:
    return str(json.loads((state_dir / "handoff.json").read_text())["leases"][name]["lease_id"])


def errors(agent: Refresher) -> int:
    for line in agent.metrics().splitlines():
        if line.startswith('sidecar_secrets_fetches_total{outcome="error"}'):
            return int(float(line.split()[-1]))
    return 0


def test_revoked_lease_means_new_credentials_and_one_reload(
    backend: Backend, token_file: Path, tmp_path: Path, app: ReloadApp
) -> None:
    backend.add_database_role("app", default_ttl=3, max_ttl=600)
    with Refresher(args(backend, token_file, tmp_path, [DB], "--reload", app.url)):
        first = credentials(tmp_path / "secrets" / "db")
        assert backend.database_login(*first)
        backend.revoke_lease(lease_id(tmp_path / "state", "db"))
        wait_for(lambda: not backend.database_user_exists(first[0]), what="the user dropped")
        assert not backend.database_login(*first)
        # The next renewal (at 2/3 of 3 s) is refused: the agent fetches anew.
        wait_for(
            lambda: credentials(tmp_path / "secrets" / "db") != first,
            timeout=15,
            what="new credentials",
        )
        wait_for(lambda: app.calls == 1, what="one reload")
        assert backend.database_login(*credentials(tmp_path / "secrets" / "db"))
        assert backend.count("GET", "database/creds/app") == 2


def test_sealed_vault_keeps_the_files_and_recovers_when_unsealed(
    backend: Backend, token_file: Path, tmp_path: Path, app: ReloadApp
) -> None:
    argv = args(backend, token_file, tmp_path, [KV], "--kv-interval", "1s", "--reload", app.url)
    target = tmp_path / "secrets" / "config"
    with Refresher(argv) as agent:
        before = target.read_text()
        backend.seal()
        wait_for(lambda: errors(agent) >= 2, timeout=15, what="two refused re-reads")
        assert target.read_text() == before
        assert agent.ready() == 200  # the app still has its files
        backend.unseal()
        backend.put_kv2("app/config", {"api_key": "k-unsealed", "region": "eu"})
        wait_for(lambda: "k-unsealed" in target.read_text(), timeout=20, what="re-read")
        wait_for(lambda: app.calls == 1, what="one reload")
        assert backend.count("POST", "auth/kubernetes/login") == 1  # the token outlived the seal


def test_restarted_vault_means_a_new_login_not_a_restarted_agent(
    backend: Backend, token_file: Path, tmp_path: Path, app: ReloadApp
) -> None:
    backend.add_database_role("app", default_ttl=600, max_ttl=6000)
    argv = args(backend, token_file, tmp_path, [KV, DB], "--kv-interval", "1s", "--reload", app.url)
    with Refresher(argv) as agent:
        first = credentials(tmp_path / "secrets" / "db")
        backend.restart()  # every token and lease is gone
        # While it restarts, the agent's reads fail and it backs off (1, 2, 4, 8 s...):
        # a real server slow to come back under load is met seconds later.
        wait_for(
            lambda: backend.count("POST", "auth/kubernetes/login") >= 2,
            timeout=60,
            what="a new login",
        )
        wait_for(
            lambda: credentials(tmp_path / "secrets" / "db") != first,
            timeout=60,
            what="credentials from the restarted Vault",
        )
        wait_for(lambda: app.calls == 1, what="one reload")
        assert backend.database_login(*credentials(tmp_path / "secrets" / "db"))
        # One new token. (A login tried while the empty server was being set up
        # again is refused and retried later: relogins may count it.)
        assert "sidecar_secrets_logins_total 2" in agent.metrics()
        assert agent.ready() == 200


def test_removed_policy_is_a_clear_error_and_the_last_files_stay(
    backend: Backend,
    token_file: Path,
    tmp_path: Path,
    app: ReloadApp,
    capfd: pytest.CaptureFixture[str],
) -> None:
    argv = args(
        backend, token_file, tmp_path, [KV], "--kv-interval", "1s", "--reload", app.url,
        "--log-level", "warning",
    )  # fmt: skip
    target = tmp_path / "secrets" / "config"
    logged: list[str] = []

    def seen(text: str) -> bool:
        logged.append(capfd.readouterr().err)
        return text in "".join(logged)

    with Refresher(argv) as agent:
        before = target.read_text()
        backend.remove_policy("app")
        wait_for(
            lambda: seen("permission denied for path secret/data/app/config: role 'app'"),
            timeout=15,
            what="the denial logged",
        )
        assert target.read_text() == before  # the last good file stays
        assert agent.ready() == 200
        assert app.calls == 0
        assert backend.count("POST", "auth/kubernetes/login") == 1  # not a bad token
        assert "sidecar_secrets_relogins_total 0" in agent.metrics()
