"""ConfigMap sources against a real HTTP server speaking list/watch."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.config.main import run
from sidecar.config.settings import load
from sidecar.files import read_file_set
from sidecar.lifecycle import StopEvent
from tests.config.servers import FakeApiServer, configmap, serve
from tests.support import ReloadApp, free_port, http_status, wait_for


@pytest.fixture
def api() -> Iterator[tuple[FakeApiServer, str]]:
    state = FakeApiServer("app-config")
    state.current = configmap("app-config", 1, {"app.yaml": "v: 1\n"})
    with serve(state.handler()) as server:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
        state.released.set()


@pytest.fixture
def app() -> Iterator[tuple[ReloadApp, str]]:
    with ReloadApp() as reload_app:
        yield reload_app, reload_app.url


class Agent:
    """The refresher in a thread of the test, against ``api_url``."""

    def __init__(
        self,
        tmp_path: Path,
        api_url: str,
        reload_url: str,
        source: str = "configmap:app-config",
        interval: str = "30s",
        directory: Path | None = None,
    ) -> None:
        self.root = directory or tmp_path / "cfg"
        self.token = tmp_path / "token"
        self.token.write_text("token-1\n")
        self.port = free_port()
        settings = load(
            [
                "--source",
                source,
                "--dir",
                str(self.root),
                "--namespace",
                "ns",
                "--kube-api",
                api_url,
                "--kube-token-file",
                str(self.token),
                "--reload",
                reload_url,
                "--agent-addr",
                f"127.0.0.1:{self.port}",
                "--interval",
                interval,
                "--log-level",
                "error",
            ],
            environ={},
        )
        self.stop = StopEvent()
        self.thread = threading.Thread(target=run, args=(settings, self.stop), daemon=True)

    def __enter__(self) -> Agent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def ready(self) -> int:
        return http_status(f"http://127.0.0.1:{self.port}/ready")


@pytest.fixture
def agent(
    tmp_path: Path, api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str]
) -> Iterator[tuple[Path, Path]]:
    with Agent(tmp_path, api[1], app[1]) as running:
        yield running.root, running.token


def files(root: Path) -> dict[str, bytes]:
    return read_file_set(root)


def test_list_then_watch_modified_deleted_and_bookmark(
    api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str], agent: tuple[Path, Path]
) -> None:
    server, _ = api
    reloads, _ = app
    root, _ = agent
    server.watches.put(
        [
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "5"}}},
            {
                "type": "MODIFIED",
                "object": configmap("app-config", 6, {"app.yaml": "v: 2\n", "extra": "x"}),
            },
        ]
    )
    wait_for(lambda: files(root) == {"app.yaml": b"v: 2\n", "extra": b"x"}, what="modified")
    wait_for(lambda: reloads.calls == 1, what="one reload")
    assert server.watch_calls[0]["resourceVersion"] == ["1"]
    assert server.watch_calls[0]["allowWatchBookmarks"] == ["true"]
    assert server.watch_calls[0]["timeoutSeconds"] == ["30"]
    assert server.tokens[0] == "Bearer token-1"
    # The stream ended (server timeout): the next watch resumes from the last version.
    server.watches.put(
        [
            {"type": "MODIFIED", "object": configmap("app-config", 7, {"app.yaml": "v: 2\n"})},
            {"type": "DELETED", "object": configmap("app-config", 8, {"app.yaml": "v: 2\n"})},
        ]
    )
    wait_for(lambda: files(root) == {"app.yaml": b"v: 2\n"}, what="key removed")
    wait_for(lambda: len(server.watch_calls) >= 3, what="watch re-established")
    assert server.watch_calls[1]["resourceVersion"] == ["6"]
    assert server.watch_calls[2]["resourceVersion"] == ["8"]
    assert reloads.calls == 2  # the removed key; DELETED kept the last files
    assert server.list_calls == 1


def test_410_gone_relists_without_a_spurious_reload(
    api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str], agent: tuple[Path, Path]
) -> None:
    server, _ = api
    reloads, _ = app
    root, token = agent
    server.list_version = 40
    token.write_text("token-2\n")  # rotated: the next request must carry it
    server.watches.put(
        [
            {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "code": 410,
                    "reason": "Expired",
                    "message": "too old resource version",
                },
            }
        ]
    )
    wait_for(lambda: server.list_calls == 2, what="re-list after 410")
    wait_for(lambda: len(server.watch_calls) >= 2, what="watch after re-list")
    assert server.watch_calls[1]["resourceVersion"] == ["40"]
    assert "Bearer token-2" in server.tokens
    assert files(root) == {"app.yaml": b"v: 1\n"}
    assert reloads.calls == 0


def test_dropped_stream_resumes_from_the_last_version(
    api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str], agent: tuple[Path, Path]
) -> None:
    server, _ = api
    reloads, _ = app
    root, _ = agent
    server.watches.put(
        [
            {"type": "MODIFIED", "object": configmap("app-config", 3, {"app.yaml": "v: 3\n"})},
            "drop",
        ]
    )
    wait_for(lambda: files(root) == {"app.yaml": b"v: 3\n"}, what="change before the drop")
    wait_for(lambda: len(server.watch_calls) >= 2, timeout=15, what="reconnect")
    assert server.watch_calls[1]["resourceVersion"] == ["3"]
    assert server.list_calls == 1
    assert reloads.calls == 1


def test_410_on_the_watch_request_itself_relists(
    api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str], agent: tuple[Path, Path]
) -> None:
    server, _ = api
    reloads, _ = app
    root, _ = agent
    server.list_version = 50
    server.current = configmap("app-config", 50, {"app.yaml": "v: 1\n"})
    server.watches.put("410")
    wait_for(lambda: server.list_calls == 2, what="re-list after HTTP 410")
    wait_for(lambda: len(server.watch_calls) >= 2, what="watch after re-list")
    assert server.watch_calls[1]["resourceVersion"] == ["50"]
    assert files(root) == {"app.yaml": b"v: 1\n"}
    assert reloads.calls == 0


def test_missing_object_is_not_ready_until_added(
    tmp_path: Path, api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str]
) -> None:
    server, url = api
    reloads, reload_url = app
    server.current = None
    with Agent(tmp_path, url, reload_url) as agent:
        wait_for(lambda: server.list_calls == 1 and server.watch_calls, what="list, then watch")
        assert agent.ready() == 503
        assert files(agent.root) == {}
        server.watches.put(
            [{"type": "ADDED", "object": configmap("app-config", 2, {"k": "created"})}]
        )
        wait_for(lambda: agent.ready() == 200, what="ready once the object exists")
        assert files(agent.root) == {"k": b"created"}
        assert reloads.calls == 0  # the app had no files to reload from
        # Deleted, then created again with other data: the files follow, one reload.
        server.watches.put(
            [
                {"type": "DELETED", "object": configmap("app-config", 3, {"k": "created"})},
                {"type": "ADDED", "object": configmap("app-config", 4, {"k": "again"})},
            ]
        )
        wait_for(lambda: files(agent.root) == {"k": b"again"}, what="re-created object")
        wait_for(lambda: reloads.calls == 1, what="one reload")
        assert agent.ready() == 200


def test_a_silent_watch_is_ended_by_the_client_timeout_and_resumed(
    tmp_path: Path, api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str]
) -> None:
    """The server keeps the stream open past its timeoutSeconds and says
    nothing (a dead proxy, a lost FIN): the client's read timeout ends it."""
    server, url = api
    reloads, reload_url = app
    server.watches.put(["stall"])
    with Agent(tmp_path, url, reload_url, interval="1s") as agent:
        wait_for(lambda: len(server.watch_calls) == 1, what="first watch")
        assert server.watch_calls[0]["timeoutSeconds"] == ["1"]
        wait_for(lambda: len(server.watch_calls) >= 2, timeout=15, what="a new watch")
        assert server.watch_calls[1]["resourceVersion"] == ["1"]
        assert server.list_calls == 1
        assert files(agent.root) == {"app.yaml": b"v: 1\n"}
        assert reloads.calls == 0


def test_secret_source_decodes_base64(tmp_path: Path, app: tuple[ReloadApp, str]) -> None:
    reloads, reload_url = app
    state = FakeApiServer("db", resource="secrets")
    state.current = {
        "kind": "Secret",
        "metadata": {"name": "db", "resourceVersion": "7"},
        "type": "Opaque",
        "data": {"password": base64.b64encode(b"s3cr\x00t").decode()},
    }
    with serve(state.handler()) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with Agent(tmp_path, url, reload_url, source="secret:db") as agent:
            wait_for(lambda: agent.ready() == 200, what="ready")
            assert files(agent.root) == {"password": b"s3cr\x00t"}
            assert (agent.root / "password").stat().st_mode & 0o777 == 0o444
        state.released.set()
    assert reloads.calls == 0


def test_a_failed_write_is_retried_by_listing_again(
    tmp_path: Path, api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str]
) -> None:
    """The list arrives but the files cannot be written (here the directory is
    a file): the agent must not resume the watch past that content."""
    server, url = api
    reloads, reload_url = app
    blocked = tmp_path / "cfg"
    blocked.write_text("not a directory")
    with Agent(tmp_path, url, reload_url) as agent:
        wait_for(lambda: server.list_calls >= 2, timeout=15, what="a second list")
        assert agent.ready() == 503
        blocked.unlink()
        wait_for(lambda: files(agent.root) == {"app.yaml": b"v: 1\n"}, timeout=15, what="write")
        wait_for(lambda: agent.ready() == 200, what="ready")
    assert reloads.calls == 0


def test_undecodable_content_is_skipped_and_listed_again(
    api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str], agent: tuple[Path, Path]
) -> None:
    server, _ = api
    reloads, _ = app
    root, _ = agent
    broken = configmap("app-config", 2, {})
    broken["binaryData"] = {"blob": "%%% not base64 %%%"}
    server.watches.put([{"type": "MODIFIED", "object": broken}])
    wait_for(lambda: server.list_calls == 2, timeout=15, what="re-list after a bad event")
    wait_for(lambda: len(server.watch_calls) >= 2, what="watching again")
    assert files(root) == {"app.yaml": b"v: 1\n"}
    server.watches.put(
        [{"type": "MODIFIED", "object": configmap("app-config", 3, {"app.yaml": "v: 2\n"})}]
    )
    wait_for(lambda: files(root) == {"app.yaml": b"v: 2\n"}, what="next good event")
    wait_for(lambda: reloads.calls == 1, what="one reload")


def test_reader_never_sees_a_mixed_set_across_1000_watched_updates(
    tmp_path: Path, api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str]
) -> None:
    """1,000 MODIFIED events, each setting keys a and b to the same value,
    through list/watch into the directory; an app-like reader resolves
    ``..data`` once per read (the kubelet volume protocol) and must always
    find a == b. Every change reloads the app exactly once."""
    server, url = api
    reloads, reload_url = app
    server.current = configmap("app-config", 1, {"a": "0", "b": "0"})
    server.watches.put(
        [
            {
                "type": "MODIFIED",
                "object": configmap("app-config", 1 + i, {"a": str(i), "b": str(i)}),
            }
            for i in range(1, 1001)
        ]
    )
    stop = threading.Event()
    mixed: list[tuple[bytes, bytes]] = []
    reads = 0

    def reader(root: Path) -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                data = root / os.readlink(root / "..data")
                pair = ((data / "a").read_bytes(), (data / "b").read_bytes())
            except FileNotFoundError:
                continue  # the generation was replaced under us: read again
            reads += 1
            if pair[0] != pair[1]:
                mixed.append(pair)

    with Agent(tmp_path, url, reload_url) as agent:
        wait_for(lambda: agent.ready() == 200, what="first sync")
        thread = threading.Thread(target=reader, args=(agent.root,))
        thread.start()
        try:
            wait_for(lambda: files(agent.root) == {"a": b"1000", "b": b"1000"}, timeout=60)
        finally:
            stop.set()
            thread.join()
        wait_for(lambda: reloads.calls == 1000, what="1,000 reloads")
    assert mixed == []
    assert reads > 100
    assert reloads.calls == 1000
