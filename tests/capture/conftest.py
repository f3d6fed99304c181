from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import kubelet, netns
from tests.capture.world import World

ok, why = netns.available()
kubelet_ok, kubelet_why = kubelet.available()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/capture/test_" in str(item.path) and "test_rules" not in str(item.path):
            if not ok:
                item.add_marker(pytest.mark.skip(reason=why))
            elif not kubelet_ok:
                item.add_marker(pytest.mark.skip(reason=kubelet_why))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    try:
        yield made
    finally:
        made.close()
