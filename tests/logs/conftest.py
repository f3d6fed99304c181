from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from standins.elasticsearch import ElasticsearchStandIn
from standins.logsink import NdjsonStandIn
from standins.loki import LokiStandIn
from tests.logs.harness import Agent, AppLog

# Fast settings for tests: the defaults are for production.
FAST = [
    "--poll-interval=50ms",
    "--rotate-wait=1s",
    "--flush-timeout=1s",
    "--batch-wait=200ms",
    "--log-level=debug",
]


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    directory = tmp_path / "logs"
    directory.mkdir()
    return directory


@pytest.fixture
def app(logs: Path) -> Iterator[AppLog]:
    log = AppLog(logs / "app.log")
    yield log
    log.close()


@pytest.fixture
def agent(tmp_path: Path, logs: Path) -> Iterator[Callable[..., Agent]]:
    """``agent(sink=..., args=[...])`` -> a started Agent; stopped at the end."""
    made: list[Agent] = []

    def make(
        sink: str = "stdout", args: list[str] | None = None, start: bool = True, **kwargs: Any
    ) -> Agent:
        workdir = tmp_path / f"agent{len(made)}"
        workdir.mkdir()
        instance = Agent(workdir, logs, sink, [*FAST, *(args or [])], **kwargs)
        made.append(instance)
        return instance.start() if start else instance

    yield make
    for instance in made:
        instance.stop()


@pytest.fixture
def ndjson() -> Iterator[NdjsonStandIn]:
    server = NdjsonStandIn()
    yield server
    server.stop()


@pytest.fixture
def loki() -> Iterator[LokiStandIn]:
    server = LokiStandIn()
    yield server
    server.stop()


@pytest.fixture
def es() -> Iterator[ElasticsearchStandIn]:
    server = ElasticsearchStandIn()
    yield server
    server.stop()
