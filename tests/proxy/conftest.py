from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.harness import Proxy, Upstream


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    """``proxy(upstream=..., inbound_port=..., args=[...], env={...})`` -> a Proxy
    (not started); every one is stopped at the end of the test."""
    made: list[Proxy] = []

    def make(**kwargs: Any) -> Proxy:
        directory = tmp_path / f"proxy{len(made)}"
        directory.mkdir()
        instance = Proxy(directory, **kwargs)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.stop()
