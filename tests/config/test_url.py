"""URL sources against a real HTTP server: ETag, changes, errors, atomicity."""

from __future__ import annotations

import os
import threading
import urllib.request
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest

from sidecar.config.main import run
from sidecar.config.settings import load
from sidecar.config.sources import MAX_BODY, HttpSource
from sidecar.errors import RetryableSourceError, SourceError
from sidecar.files import read_file_set, write_file_set
from sidecar.lifecycle import StopEvent
from tests.config.servers import ConfigServer, serve
from tests.support import ReloadApp, free_port, http_status, wait_for


class Agent:
    def __init__(self, tmp_path: Path, url: str, reload_url: str, interval: str = "1s") -> None:
        self.dir = tmp_path / "config"
        self.port = free_port()
        self.settings = load(
            [
                "--source",
                url,
                "--dir",
                str(self.dir),
                "--interval",
                interval,
                "--reload",
                reload_url,
                "--agent-addr",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "error",
            ],
            environ={},
        )
        self.stop = StopEvent()
        self.thread = threading.Thread(target=run, args=(self.settings, self.stop), daemon=True)

    def __enter__(self) -> Agent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())


@pytest.fixture
def config() -> Iterator[tuple[ConfigServer, str]]:
    state = ConfigServer(b"level: info\n")
    with serve(state.handler()) as server:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/app.yaml"


@pytest.fixture
def app() -> Iterator[tuple[ReloadApp, str]]:
    with ReloadApp() as reload_app:
        yield reload_app, reload_app.url


def test_first_sync_then_304s_cause_no_write_and_no_reload(
    tmp_path: Path, config: tuple[ConfigServer, str], app: tuple[ReloadApp, str]
) -> None:
    state, url = config
    reloads, reload_url = app
    with Agent(tmp_path, url, reload_url) as agent:
        wait_for(lambda: http_status(f"http://127.0.0.1:{agent.port}/ready") == 200, what="ready")
        assert (agent.dir / "app.yaml").read_bytes() == b"level: info\n"
        generation = os.readlink(agent.dir / "..data")
        wait_for(lambda: state.not_modified >= 2, what="two conditional GETs answered 304")
        assert os.readlink(agent.dir / "..data") == generation
        assert reloads.calls == 0
        assert 'sidecar_config_fetches_total{outcome="not_modified"}' in agent.metrics()


def test_change_writes_new_files_and_reloads_exactly_once(
    tmp_path: Path, config: tuple[ConfigServer, str], app: tuple[ReloadApp, str]
) -> None:
    state, url = config
    reloads, reload_url = app
    with Agent(tmp_path, url, reload_url) as agent:
        wait_for(lambda: (agent.dir / "app.yaml").exists(), what="first sync")
        state.set(b"level: debug\n")
        wait_for(lambda: reloads.calls == 1, what="one reload")
        assert (agent.dir / "app.yaml").read_bytes() == b"level: debug\n"
        wait_for(lambda: state.not_modified >= 2, what="more polls after the change")
        assert reloads.calls == 1
        metrics = agent.metrics()
        assert "sidecar_config_changes_total 2" in metrics  # first write + the change
        assert 'sidecar_reloads_total{outcome="ok"} 1' in metrics


def test_server_errors_back_off_and_keep_the_last_good_files(
    tmp_path: Path, config: tuple[ConfigServer, str], app: tuple[ReloadApp, str]
) -> None:
    state, url = config
    reloads, reload_url = app
    with Agent(tmp_path, url, reload_url) as agent:
        wait_for(lambda: (agent.dir / "app.yaml").exists(), what="first sync")
        state.fail_with = 503
        before = state.requests
        wait_for(lambda: 'outcome="error"} 2' in agent.metrics(), timeout=15, what="two errors")
        assert (agent.dir / "app.yaml").read_bytes() == b"level: info\n"
        assert read_file_set(agent.dir) == {"app.yaml": b"level: info\n"}
        assert [
            p.name for p in agent.dir.iterdir() if p.name.startswith(".") and not p.is_symlink()
        ].__len__() == 1  # one generation, nothing half-written
        assert reloads.calls == 0
        assert state.requests - before <= 4  # backing off, not hammering
        state.fail_with = None
        state.set(b"level: warn\n")
        wait_for(lambda: reloads.calls == 1, timeout=15, what="reload after recovery")


def test_bad_settings_name_the_flag_and_variable() -> None:
    from sidecar.errors import UsageError

    with pytest.raises(UsageError, match=r"--source / SIDECAR_CONFIG_SOURCE: 'ftp://x'"):
        load(["--source", "ftp://x"], environ={})
    with pytest.raises(UsageError, match="SIDECAR_CONFIG_INTERVAL"):
        load(["--interval", "soon"], environ={"SIDECAR_CONFIG_SOURCE": "http://x/"})
    with pytest.raises(UsageError, match="SIDECAR_POD_NAMESPACE is required"):
        load(["--source", "configmap:app", "--kube-api", "http://127.0.0.1:1"], environ={})
    with pytest.raises(UsageError, match="SIDECAR_RELOAD"):
        load(["--source", "http://x/", "--reload", "carrier-pigeon"], environ={})


def test_reader_never_sees_a_mixed_set_across_1000_updates(tmp_path: Path) -> None:
    """Two keys always written with the same value; a reader through ..data
    must never see them differ, while the syncer applies 1,000 changes."""
    from sidecar.config.syncer import Syncer
    from sidecar.log import Logger
    from sidecar.metrics import Registry

    syncer = Syncer(tmp_path / "c", Registry(), Logger("t", stream=StringIO()), None)
    syncer.apply({"a": b"0", "b": b"0"})
    stop = threading.Event()
    mixed: list[tuple[bytes, bytes]] = []

    def reader() -> None:
        root = tmp_path / "c"
        while not stop.is_set():
            try:
                data = root / os.readlink(root / "..data")
                pair = ((data / "a").read_bytes(), (data / "b").read_bytes())
            except FileNotFoundError:
                continue
            if pair[0] != pair[1]:
                mixed.append(pair)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(1, 1001):
        syncer.apply({"a": str(i).encode(), "b": str(i).encode()})
    stop.set()
    thread.join()
    assert mixed == []
    assert syncer.changes.value() == 1001


def test_file_name_defaults_to_the_urls_last_segment() -> None:
    def name(url: str) -> str:
        return str(load(["--source", url], environ={}).file_name)

    assert name("http://cfg/app/settings.yaml") == "settings.yaml"
    assert name("http://cfg/") == "config"
    assert name("http://cfg/app/..") == "config"
    assert load(["--source", "http://cfg/a.yaml", "--file", "b.json"], environ={}).file_name == (
        "b.json"
    )


def test_last_modified_alone_gives_conditional_gets(
    tmp_path: Path, app: tuple[ReloadApp, str]
) -> None:
    """A server without ETags: If-Modified-Since carries its Last-Modified."""
    reloads, reload_url = app
    state = ConfigServer(b"level: info\n", etag=False)
    with serve(state.handler()) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/app.yaml"
        with Agent(tmp_path, url, reload_url) as agent:
            wait_for(lambda: state.not_modified >= 2, what="two 304s")
            assert state.if_modified_since[0] == state.last_modified
            generation = os.readlink(agent.dir / "..data")
            state.set(b"level: debug\n", last_modified="Wed, 01 Jan 2031 00:00:00 GMT")
            wait_for(lambda: reloads.calls == 1, what="one reload")
            assert os.readlink(agent.dir / "..data") != generation
            assert read_file_set(agent.dir) == {"app.yaml": b"level: debug\n"}


def test_a_failed_write_is_fetched_again_in_full(
    tmp_path: Path, config: tuple[ConfigServer, str], app: tuple[ReloadApp, str]
) -> None:
    """The body arrived but could not be written (the directory is a file):
    the next poll must not send the ETag of content that never landed."""
    state, url = config
    reloads, reload_url = app
    agent = Agent(tmp_path, url, reload_url)
    agent.dir.write_text("not a directory")
    with agent:
        wait_for(lambda: 'outcome="error"} 1' in agent.metrics(), what="a write error")
        assert http_status(f"http://127.0.0.1:{agent.port}/ready") == 503
        agent.dir.unlink()
        wait_for(lambda: read_file_set(agent.dir) == {"app.yaml": b"level: info\n"}, what="files")
        assert state.not_modified == 0
        wait_for(lambda: http_status(f"http://127.0.0.1:{agent.port}/ready") == 200, what="ready")
    assert reloads.calls == 0


def test_an_oversized_body_is_refused_and_the_last_files_kept(
    tmp_path: Path, config: tuple[ConfigServer, str], app: tuple[ReloadApp, str]
) -> None:
    state, url = config
    reloads, reload_url = app
    with Agent(tmp_path, url, reload_url) as agent:
        wait_for(lambda: (agent.dir / "app.yaml").exists(), what="first sync")
        state.set(b"x" * (MAX_BODY + 1))
        wait_for(lambda: 'outcome="error"} 1' in agent.metrics(), what="the refusal")
        assert read_file_set(agent.dir) == {"app.yaml": b"level: info\n"}
        assert reloads.calls == 0


def test_answers_that_need_a_fix_are_not_retried_by_init(
    config: tuple[ConfigServer, str],
) -> None:
    state, url = config
    source = HttpSource(url, "app.yaml")
    state.fail_with = 302
    with pytest.raises(SourceError, match="redirects are not followed") as caught:
        source.fetch()
    assert not isinstance(caught.value, RetryableSourceError)
    state.fail_with = 403
    with pytest.raises(SourceError, match="HTTP 403") as caught:
        source.fetch()
    assert not isinstance(caught.value, RetryableSourceError)
    for status in (404, 429, 503):
        state.fail_with = status
        with pytest.raises(RetryableSourceError, match=f"HTTP {status}"):
            source.fetch()


@pytest.mark.parametrize("same", [True, False])
def test_files_from_the_init_container_changed_on_the_first_sync_reload_the_app(
    tmp_path: Path, config: tuple[ConfigServer, str], app: tuple[ReloadApp, str], same: bool
) -> None:
    """The init container wrote the files the app may already have read: if
    the source changed since, the refresher's first sync is a real change."""
    state, url = config
    reloads, reload_url = app
    agent = Agent(tmp_path, url, reload_url)
    write_file_set(agent.dir, {"app.yaml": b"level: info\n" if same else b"level: old\n"})
    generation = os.readlink(agent.dir / "..data")
    with agent:
        wait_for(lambda: state.not_modified >= 1, what="first sync and one poll after")
        assert read_file_set(agent.dir) == {"app.yaml": b"level: info\n"}
        assert (os.readlink(agent.dir / "..data") == generation) is same
        assert reloads.calls == (0 if same else 1)
