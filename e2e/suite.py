"""``make e2e-local``'s suite, run by ``python -m e2e.cluster run`` next to the cluster.

1. The injector as a local process (``e2e.harness``) behind the overlay's
   webhook configuration rewritten to its URL: every test but the ``nodes``
   ones (this covers the tests that stop or inspect the local process).
2. When the cluster has a Ready node: the injector installed from the e2e
   overlay as an operator would (``SIDECAR_E2E_INJECTOR=install``, as on
   kind): the ``nodes`` tests (``make e2e-kind`` runs the whole suite so).

Extra arguments go to both pytest runs. Exits non-zero if either failed, or
when ``SIDECAR_TESTS_NO_SKIP`` is set (CI) and the cluster has no Ready node;
there a skipped ``nodes`` or ``sandbox`` test fails too (e2e/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from e2e.kube import Kube


def main(argv: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest", "-q", *argv]
    # The project's console scripts (sidecar-injector, sidecar) on PATH, as in
    # an activated virtual environment.
    scripts = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    first = subprocess.run([*pytest, "-m", "not nodes", "e2e"], check=False).returncode
    if not Kube(os.environ.get("KUBECONFIG")).has_nodes():
        print("e2e: no Ready node: the nodes tests were not run", file=sys.stderr)
        if os.environ.get("SIDECAR_TESTS_NO_SKIP"):
            print(
                "e2e: SIDECAR_TESTS_NO_SKIP (CI) wants them: run as root, without "
                "SIDECAR_E2E_NODE=0, so that the local cluster has its node",
                file=sys.stderr,
            )
            return first or 1
        return first
    env = dict(os.environ, SIDECAR_E2E_INJECTOR="install")
    second = subprocess.run([*pytest, "-m", "nodes", "e2e"], env=env, check=False)
    return first or second.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
