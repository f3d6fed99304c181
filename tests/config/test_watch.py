"""ConfigMap sources against a real HTTP server speaking list/watch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.config.main import run
from sidecar.config.settings import load
from sidecar.files import read_file_set
from sidecar.lifecycle import StopEvent
from tests.config.servers import FakeApiServer, configmap, serve
from tests.support import ReloadApp, free_port, wait_for


@pytest.fixture
def api() -> Iterator[tuple[FakeApiServer, str]]:
    state = FakeApiServer("app-config")
    state.current = configmap("app-config", 1, {"app.yaml": "v: 1\n"})
    with serve(state.handler()) as server:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def app() -> Iterator[tuple[ReloadApp, str]]:
    with ReloadApp() as reload_app:
        yield reload_app, reload_app.url


@pytest.fixture
def agent(tmp_path: Path, api: tuple[FakeApiServer, str], app: tuple[ReloadApp, str]):
    token = tmp_path / "token"
    token.write_text("token-1\n")
    settings = load(
        [
            "--source",
            "configmap:app-config",
            "--dir",
            str(tmp_path / "cfg"),
            "--namespace",
            "ns",
            "--kube-api",
            api[1],
            "--kube-token-file",
            str(token),
            "--reload",
            app[1],
            "--agent-addr",
            f"127.0.0.1:{free_port()}",
            "--interval",
            "30s",
            "--log-level",
            "error",
        ],
        environ={},
    )
    stop = StopEvent()
    thread = threading.Thread(target=run, args=(settings, stop), daemon=True)
    thread.start()
    yield tmp_path / "cfg", token
    stop.set()
    thread.join(timeout=10)


def files(root: Path) -> dict[str, bytes]:
    return read_file_set(root)


def test_list_then_watch_modified_added_deleted_and_bookmark(api, app, agent) -> None:
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


def test_410_gone_relists_without_a_spurious_reload(api, app, agent) -> None:
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


def test_dropped_stream_resumes_from_the_last_version(api, app, agent) -> None:
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
