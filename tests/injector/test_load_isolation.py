"""A huge pod never holds other reviews: shown by order, not by timing.

``sidecar-injector serve --workers 1`` (one event loop for every review) gets
a pod with 40,000 volumes (1.4 MB, ``inject: "true"``) and, once the worker
logs that it has the whole review (``--log-level debug``), a normal pod on
another connection. The worker must answer the normal review first (its debug
log says in which order it answered): the huge one is reviewed in the
supervisor process, off the worker's event loop, and denied for its volumes.
With offloading switched off (``--offload-above`` beyond the body) the same
run answers the huge one first, which shows the test can fail. How long each
takes is measured by ``make bench``, not asserted here.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.golden_tool import BASE_SETTINGS
from tests.injector.reviews import review
from tests.injector.server import InjectorServer
from tests.support import wait_for

P = "sidecar.example.io/"
ANSWERED = re.compile(r"review (huge|normal): (?:injected|denied) in ")


def pod(volumes: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {P + "inject": "true"}},
        "spec": {
            "containers": [{"name": "app", "image": "a", "ports": [{"containerPort": 80}]}],
            "volumes": [{"name": f"v{i}", "emptyDir": {}} for i in range(volumes)],
        },
    }


def race(server: InjectorServer) -> list[tuple[str, dict[str, Any]]]:
    """Send the huge review and, once it is written, the normal one on another
    connection; the answers in the order they completed."""
    huge = json.dumps(review(pod(40_000), uid="huge")).encode()
    normal = json.dumps(review(pod(1), uid="normal")).encode()
    context = ssl.create_default_context(cafile=str(server.ca))
    done: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()
    sent = threading.Event()

    def post_normal() -> None:
        with httpx.Client(verify=context, timeout=30) as client:
            client.get(server.url + "/healthz")  # connected before the race
            assert sent.wait(30)
            wait_for(
                lambda: "review huge: " in server.output(),
                timeout=30,
                what="the worker to have the huge review",
            )
            answer = client.post(server.url + "/mutate", content=normal)
        with lock:
            done.append(("normal", answer.json()["response"]))

    threads = [
        threading.Thread(target=_send_huge, args=(server, context, huge, sent, done, lock)),
        threading.Thread(target=post_normal),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return done


def _send_huge(
    server: InjectorServer,
    context: ssl.SSLContext,
    body: bytes,
    sent: threading.Event,
    done: list[tuple[str, dict[str, Any]]],
    lock: threading.Lock,
) -> None:
    def stream() -> Iterator[bytes]:
        yield body
        sent.set()  # httpx asks for more only once that chunk is written

    with httpx.Client(verify=context, timeout=30) as client:
        client.get(server.url + "/healthz")
        answer = client.post(
            server.url + "/mutate",
            content=stream(),
            headers={"Content-Length": str(len(body)), "Content-Type": "application/json"},
        )
    with lock:
        done.append(("huge", answer.json()["response"]))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.mark.parametrize(("offload_above", "first"), [(256 * 1024, "normal"), (10**8, "huge")])
def test_a_huge_pod_does_not_hold_a_normal_review(
    workdir: Path, offload_above: int, first: str
) -> None:
    server = InjectorServer(
        workdir,
        BASE_SETTINGS,
        "--workers",
        "1",
        "--offload-above",
        str(offload_above),
        "--log-level",
        "debug",
    ).start()
    try:
        started = time.monotonic()
        done = race(server)
    finally:
        assert server.stop() == 0, server.output()
    # The order the worker answered in (its debug log), not the order the client
    # threads happened to read the answers.
    answered = ANSWERED.findall(server.output())
    assert answered == [first, "huge" if first == "normal" else "normal"], answered
    assert {name for name, _ in done} == {"huge", "normal"}
    answers = dict(done)
    assert answers["normal"]["allowed"] is True
    assert answers["normal"]["patchType"] == "JSONPatch"
    assert answers["huge"]["allowed"] is False
    assert "40000 volumes" in answers["huge"]["status"]["message"]
    assert time.monotonic() - started < 60
