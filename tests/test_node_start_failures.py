"""A node that cannot start says why and what to do, at once (issue 11, item 8).

``python -m e2e.cluster run`` (what ``make test`` calls) is started, as root,
on a machine made to lack one thing for real: a capability (dropped with
util-linux ``setpriv``) or a package's tool (hidden in a private mount
namespace). It must stop in seconds, before building or starting anything,
with the cause and the fix, and leave no state directory behind. Failures
met later, in a component's log (a port taken, runc refusing a container,
missing CNI plugins), are named by ``e2e.node.hint``:
tests/test_node_harness.py. In CI (``SIDECAR_TESTS_NO_SKIP``), a cluster
that came up without its node fails the e2e suite, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("iptables") is None,
    reason="needs root, util-linux and iptables (as the e2e node does)",
)
RUN = [sys.executable, "-m", "e2e.cluster", "run", "--", "true"]


def _start(prefix: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *RUN],
        cwd=ROOT,
        env=dict(os.environ, SIDECAR_E2E_NODE="1", TMPDIR=str(tmp)),  # where `run` keeps state
        capture_output=True,
        text=True,
        check=False,
        timeout=60,  # a guard: the failure is reported before anything starts
    )


def test_a_missing_capability_is_named_with_the_fix(tmp_path: Path) -> None:
    drop = "-net_admin"
    result = _start(["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", "--"], tmp_path)
    assert result.returncode == 1, result.stderr
    assert "the e2e node cannot start here" in result.stderr
    assert "lacks CAP_NET_ADMIN" in result.stderr
    assert "outside a restricted container" in result.stderr
    assert "CAP_SYS_ADMIN" not in result.stderr  # only what is missing
    assert list(tmp_path.iterdir()) == []  # no state directory left


def test_a_missing_package_is_named_with_the_fix(tmp_path: Path) -> None:
    iptables = shutil.which("iptables")
    assert iptables is not None
    hide = f"mount --bind /dev/null {iptables} && exec " + " ".join(RUN)
    result = _start(["unshare", "--mount", "--propagation", "private", "sh", "-c", hide], tmp_path)
    assert result.returncode == 1, result.stderr
    assert "iptables not found: apt-get install iptables" in result.stderr
    assert "runc not found" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no state directory left


def test_ci_fails_when_the_cluster_has_no_node(tmp_path: Path) -> None:
    """``SIDECAR_TESTS_NO_SKIP`` (set by .ci/run): a cluster without its node
    fails the e2e suite instead of leaving the nodes tests out, saying why."""
    suite = [sys.executable, "-m", "e2e.suite", "-k", "test_api_access_token_lists_configmaps"]
    result = subprocess.run(
        [sys.executable, "-m", "e2e.cluster", "run", "--", *suite],
        cwd=ROOT,
        env=dict(os.environ, SIDECAR_E2E_NODE="0", SIDECAR_TESTS_NO_SKIP="1", TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 1, result.stderr
    assert "the nodes tests were not run" in result.stderr
    assert "run as root, without SIDECAR_E2E_NODE=0" in result.stderr
