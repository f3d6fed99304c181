from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import kubelet, netns
from tests.capture.world import World

ok, why = netns.available()
kubelet_ok, kubelet_why = kubelet.available()


# Modules that run processes in network namespaces (root, util-linux, iproute2, iptables).
NAMESPACED = {"test_init.py", "test_traffic.py", "test_policy.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name == "capture" and item.path.name in NAMESPACED:
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
