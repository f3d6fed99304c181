"""The secrets agent when Vault misbehaves: expiry, caps, seals, slowness, outages."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
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
from standins.vault import VaultStandIn, make_jwt
from tests.secrets.backends import Backend
from tests.secrets.conftest import Refresher, args, credentials
from tests.support import ReloadApp, wait_for

SIDECAR = [sys.executable, "-m", "sidecar", "secrets"]
KV = {"name": "config", "path": "secret/data/app/config"}
DB = {"name": "db", "path": "database/creds/app"}


def test_token_renewed_at_two_thirds_then_replaced_when_capped(
    backend: Backend, token_file: Path, tmp_path: Path, app: ReloadApp
) -> None:
    backend.add_role("app", ["app"], ["shop"], ["database/creds/"], token_ttl=3, token_max_ttl=6)
    backend.add_database_role("app", default_ttl=600, max_ttl=6000)
    argv = args(backend, token_file, tmp_path, [DB], "--reload", app.url)
    with Refresher(argv) as agent:
        creds = credentials(tmp_path / "secrets" / "db")
        wait_for(
            lambda: backend.count("POST", "auth/kubernetes/login") >= 2,
            timeout=15,
            what="a new login once renewals are capped",
        )
        first_login, second_login = backend.times("POST", "auth/kubernetes/login")[:2]
        renewals = backend.times("POST", "auth/token/renew-self")
        assert 1.5 <= renewals[0] - first_login <= 2.7  # 2/3 of 3 s
        assert second_login - first_login < 6  # before the first token's max TTL
        # The leases of the first token end with it: the credentials are fetched
        # anew under the new token, and the app is told once.
        wait_for(lambda: backend.count("GET", "database/creds/app") == 2, what="re-fetch")
        assert backend.times("GET", "database/creds/app")[1] >= second_login
        wait_for(lambda: app.calls == 1, what="one reload for the new credentials")
        assert credentials(tmp_path / "secrets" / "db") != creds
        assert backend.database_login(*credentials(tmp_path / "secrets" / "db"))
        wait_for(lambda: not backend.database_login(*creds), what="the first user gone")
        assert 'sidecar_secrets_renewals_total{kind="token"}' in agent.metrics()
    assert backend.count("PUT", "sys/leases/renew") == 0  # never renewed a dead lease


def test_a_slow_vault_still_gets_renewals_before_expiry(
    vault: VaultStandIn, jwt_file: Path, tmp_path: Path
) -> None:
    """Stand-in only (slow on demand). Every answer takes 1.2 s and Vault starts
    a TTL when it answers: timed from the answers' arrival, each renewal would
    reach Vault 0.2 s after the 3 s token and lease ended (a login and a
    re-fetch every time); timed from the requests, they arrive 1 s early."""
    vault.add_role("app", ["app"], ["shop"], ["database/creds/"], token_ttl=3, token_max_ttl=600)
    vault.add_database_role("app", default_ttl=3, max_ttl=600)
    vault.delay = 1.2
    try:
        with Refresher(args(vault, jwt_file, tmp_path, [DB])):
            wait_for(
                lambda: vault.count("PUT", "/v1/sys/leases/renew") >= 2,
                timeout=30,
                what="two lease renewals",
            )
            wait_for(
                lambda: vault.count("POST", "/v1/auth/token/renew-self") >= 2,
                timeout=30,
                what="two token renewals",
            )
            assert vault.count("POST", "/v1/auth/kubernetes/login") == 1
            assert vault.count("GET", "/v1/database/creds/app") == 1
    finally:
        vault.delay = 0.0


def test_expired_token_relogs_in_once_and_refetches_leased_secrets(
    backend: Backend, token_file: Path, tmp_path: Path, app: ReloadApp
) -> None:
    backend.add_database_role("app", default_ttl=600, max_ttl=6000)
    argv = args(backend, token_file, tmp_path, [KV, DB], "--kv-interval", "1s", "--reload", app.url)
    with Refresher(argv) as agent:
        first = credentials(tmp_path / "secrets" / "db")
        backend.expire_tokens()  # Vault revokes the lease with the token
        wait_for(lambda: not backend.database_user_exists(first[0]), what="the user dropped")
        wait_for(lambda: backend.count("GET", "database/creds/app") == 2, what="re-fetch")
        wait_for(lambda: app.calls == 1, what="one reload")
        assert backend.count("POST", "auth/kubernetes/login") == 2
        assert "sidecar_secrets_relogins_total 1" in agent.metrics()
        assert backend.database_login(*credentials(tmp_path / "secrets" / "db"))


def test_jwt_is_read_again_for_every_login(
    backend: Backend, token_file: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The kubelet rotates the projected token: each login reads the file anew
    (shown by rotating it to another ServiceAccount's token, then back)."""
    argv = args(
        backend, token_file, tmp_path, [KV], "--kv-interval", "1s", "--log-level", "warning"
    )
    logged: list[str] = []

    def seen(text: str) -> bool:
        logged.append(capfd.readouterr().err)
        return text in "".join(logged)

    with Refresher(argv) as agent:
        token_file.write_text(backend.jwt("other", "shop"))
        backend.expire_tokens()
        wait_for(
            lambda: seen("service account name not authorized"),
            timeout=15,
            what="a login with the rotated token",
        )
        token_file.write_text(backend.jwt("app", "shop"))
        wait_for(
            lambda: "sidecar_secrets_logins_total 2" in agent.metrics(),
            timeout=20,
            what="a login with the next token",
        )
        assert (tmp_path / "secrets" / "config").read_text() == "api_key: k-123\nregion: eu\n"


def test_policy_denial_is_not_mistaken_for_a_bad_token(
    backend: Backend, token_file: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    denied = {"name": "other", "path": "secret/data/other/thing"}
    argv = args(backend, token_file, tmp_path, [KV, denied], "--log-level", "warning")
    with Refresher(argv, wait_ready=False) as agent:
        wait_for(
            lambda: backend.count("GET", "secret/data/other/thing") >= 3,
            timeout=15,
            what="three refused reads",
        )
        assert agent.ready() == 503  # not every secret is there
        assert (tmp_path / "secrets" / "config").exists()
        assert backend.count("POST", "auth/kubernetes/login") == 1
        assert "sidecar_secrets_relogins_total 0" in agent.metrics()
        reads = backend.times("GET", "secret/data/other/thing")
        assert reads[2] - reads[1] > reads[1] - reads[0] >= 0.7  # backing off
    logged = capfd.readouterr().err
    assert "permission denied for path secret/data/other/thing: role 'app'" in logged


def test_sealed_vault_is_retried_with_backoff_not_hammered(
    vault: VaultStandIn, jwt_file: Path, tmp_path: Path
) -> None:
    """Stand-in only: the calls a sealed Vault refuses are counted here, and a
    sealed real Vault audits nothing. (Sealed against both: test_outages.)"""
    vault.add_role("app", ["app"], ["shop"], ["secret/data/app/"], token_ttl=3, token_max_ttl=600)
    argv = args(vault, jwt_file, tmp_path, [KV], "--kv-interval", "1s")
    with Refresher(argv) as agent:
        vault.reset_calls()
        vault.sealed = True  # the token's renewal (due at 2 s) and the reads fail
        wait_for(
            lambda: vault.count("GET", "/v1/secret/data/app/config") >= 3,
            timeout=15,
            what="three refused reads",
        )
        reads = vault.times("GET", "/v1/secret/data/app/config")
        assert reads[2] - reads[1] > reads[1] - reads[0] >= 0.7
        wait_for(lambda: vault.count("POST", "/v1/auth/token/renew-self") >= 1, what="renewal")
        assert vault.count("POST", "/v1/auth/") <= 4  # renewal retries are spaced too
        vault.sealed = False
        wait_for(
            lambda: vault.count("POST", "/v1/auth/token/renew-self") >= 2,
            timeout=15,
            what="a renewal once unsealed",
        )
        before = len(vault.calls)
        wait_for(lambda: len(vault.calls) >= before + 1, what="recovered reads")
        assert agent.ready() == 200
        assert 'sidecar_secrets_fetches_total{outcome="error"}' in agent.metrics()


def test_init_retries_sealed_and_rate_limited_vault_with_growing_backoff(
    vault: VaultStandIn, jwt_file: Path, tmp_path: Path
) -> None:
    """Stand-in only: a real Vault neither rate-limits (429) on demand nor
    audits what it refuses while sealed."""
    vault.sealed = True
    settings = load(args(vault, jwt_file, tmp_path, [KV], "--init"), environ={})
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))

    def clear_faults() -> None:
        wait_for(lambda: vault.count("POST", "/v1/auth/") >= 3, what="three sealed answers")
        vault.sealed, vault.rate_limited = False, True
        wait_for(lambda: vault.count("POST", "/v1/auth/") >= 4, what="a rate-limited answer")
        vault.rate_limited = False

    helper = threading.Thread(target=clear_faults)
    helper.start()
    agent.render_all(Deadline.after(30), StopEvent())
    helper.join()
    assert (tmp_path / "secrets" / "config").exists()
    tries = vault.times("POST", "/v1/auth/kubernetes/login")
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert len(gaps) >= 4
    assert gaps[0] >= 0.15  # jittered 0.2 s, then doubling
    assert gaps[0] < gaps[1] < gaps[2] < gaps[3]


def test_init_gives_up_on_a_slow_vault_at_its_deadline(
    vault: VaultStandIn, jwt_file: Path, tmp_path: Path
) -> None:
    """Stand-in only: a real Vault is not slow on demand."""
    vault.delay = 30.0
    started = time.monotonic()
    result = subprocess.run(
        [*SIDECAR, "--init", "--deadline", "1s", *args(vault, jwt_file, tmp_path, [KV])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    vault.delay = 0.0
    assert result.returncode == 1
    assert elapsed < 5  # the deadline bounds each call too, not only the retries
    last = result.stderr.strip().splitlines()[-1]
    assert "unreachable (POST auth/kubernetes/login): timed out" in last


def test_a_call_cut_off_by_the_deadline_does_not_hide_what_vault_answered(
    vault: VaultStandIn, tmp_path: Path
) -> None:
    """Stand-in only (slow on demand). A refused login, then Vault slows down:
    the try the deadline cuts off says nothing about Vault, so the pod is told
    about the refusal, not "unreachable: timed out" (as it was when the real
    Vault's TokenReviews were slow under load)."""
    jwt_file = tmp_path / "token"
    jwt_file.write_text(make_jwt("other", "shop"))
    settings = load(args(vault, jwt_file, tmp_path, [KV], "--init"), environ={})
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))

    def slow_down_after_a_refusal() -> None:
        # A second try means the first was answered (calls count on arrival).
        wait_for(lambda: vault.count("POST", "/v1/auth/") >= 2, what="a refused login")
        vault.delay = 30.0

    helper = threading.Thread(target=slow_down_after_a_refusal)
    helper.start()
    try:
        with pytest.raises(SourceError) as caught:
            agent.render_all(Deadline.after(2), StopEvent())
    finally:
        helper.join()
        vault.delay = 0.0
    assert str(caught.value).startswith(
        "secrets not rendered by the deadline (config): login as role 'app' denied at "
        "auth/kubernetes: POST auth/kubernetes/login: 403 service account name not authorized"
    )


@pytest.mark.parametrize(
    ("fault", "clear", "seen"),
    [("stop", "start", "Connection refused"), ("seal", "unseal", "503 Vault is sealed")],
    ids=["down", "sealed"],
)
def test_init_waits_for_vault_to_come_up(
    backend: Backend, token_file: Path, tmp_path: Path, fault: str, clear: str, seen: str
) -> None:
    getattr(backend, fault)()
    argv = args(backend, token_file, tmp_path, [KV])
    argv[argv.index("--log-level") + 1] = "warning"
    process = subprocess.Popen(
        [*SIDECAR, "--init", "--deadline", "30s", *argv], stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "secrets not ready; retrying" in line
        assert seen in line
        getattr(backend, clear)()
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
    assert (tmp_path / "secrets" / "config").read_text() == "api_key: k-123\nregion: eu\n"


def test_deleted_and_missing_secrets_are_named(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    backend.delete_kv2("app/config")
    settings = load(args(backend, token_file, tmp_path, [KV], "--init"), environ={})
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))
    with pytest.raises(SourceError, match=r"secret/data/app/config: version 1 was deleted at "):
        agent.render_all(Deadline.after(3), StopEvent())
    missing = [{"name": "m", "path": "secret/data/app/missing"}]
    settings = load(args(backend, token_file, tmp_path, missing, "--init"), environ={})
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))
    with pytest.raises(SourceError, match=r"no secret at secret/data/app/missing \(404\)"):
        agent.render_all(Deadline.after(3), StopEvent())


def test_a_pinned_version_deleted_later_is_named_and_the_latest_still_read(
    backend: Backend, token_file: Path, tmp_path: Path
) -> None:
    backend.put_kv2("app/config", {"api_key": "k-2", "region": "eu"})  # version 2
    backend.delete_kv2("app/config", version=1)
    spec = [KV, {"name": "pinned", "path": "secret/data/app/config?version=1"}]
    settings = load(args(backend, token_file, tmp_path, spec, "--init"), environ={})
    agent = build(settings, Registry(), Logger("t", stream=StringIO()))
    with pytest.raises(SourceError) as caught:
        agent.render_all(Deadline.after(3), StopEvent())
    assert str(caught.value).startswith(
        "secrets not rendered by the deadline (pinned): secret at "
        "secret/data/app/config?version=1: version 1 was deleted at "
    )
    assert (tmp_path / "secrets" / "config").read_text() == "api_key: k-2\nregion: eu\n"
    assert not (tmp_path / "secrets" / "pinned").exists()


def test_answers_cut_off_half_way_are_retried_not_taken_for_empty_ones(
    vault: VaultStandIn, jwt_file: Path, tmp_path: Path
) -> None:
    """Stand-in only: a connection closed half-way through an answer."""
    vault.partial = 2  # two login answers: the agent logs in a third time
    result = subprocess.run(
        [
            *SIDECAR,
            "--init",
            "--deadline",
            "30s",
            *args(vault, jwt_file, tmp_path, [KV], "--log-level", "warning"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secrets" / "config").read_text() == "api_key: k-123\nregion: eu\n"
    assert vault.count("POST", "/v1/auth/kubernetes/login") == 3
    assert vault.count("GET", "/v1/secret/data/app/config") == 1
    assert "(POST auth/kubernetes/login): answer cut off after " in result.stderr
