"""The secrets agent run the way a kubelet runs it, next to an app of another
user, against the real Vault and the stand-in."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import kubelet
from tests.secrets.backends import Backend
from tests.support import free_port, http_status, wait_for

ok, why = kubelet.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

SPEC = [{"name": "config", "path": "secret/data/app/config"}]
READ_AND_TRY_WRITE = (
    "import sys\n"
    "print(open('/var/run/secrets/sidecar/config').read(), end='')\n"
    "try:\n"
    "    open('/var/run/secrets/sidecar/config', 'a')\n"
    "    print('WROTE')\n"
    "except OSError as e:\n"
    "    print('refused', e.errno)\n"
)


AGENT_MOUNTS = [
    kubelet.Mount("sidecar-secrets", "/var/run/secrets/sidecar"),
    kubelet.Mount("sidecar-secrets-state", "/var/run/sidecar/state"),
    kubelet.Mount("token", "/var/run/sidecar/token", read_only=True),
]


def _env(vault: Backend, extra: dict[str, str]) -> dict[str, str]:
    return {
        "SIDECAR_VAULT_ADDR": vault.addr,
        "SIDECAR_VAULT_ROLE": "app",
        "SIDECAR_SECRETS": json.dumps(SPEC),
        **extra,
    }


def _init(
    pod: kubelet.Pod, vault: Backend, token_file: Path, extra: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    pod.volume("token").joinpath("token").write_text(token_file.read_text())
    return pod.run(
        [*kubelet.SIDECAR_IMAGE_COMMAND, "secrets", "--init"],
        user=1337,
        group=1337,
        mounts=AGENT_MOUNTS,
        env=_env(vault, extra),
    )


def _app(pod: kubelet.Pod, read_only: bool) -> subprocess.CompletedProcess[str]:
    return pod.run(
        [sys.executable, "-c", READ_AND_TRY_WRITE],
        user=1000,
        group=1000,
        mounts=[kubelet.Mount("sidecar-secrets", "/var/run/secrets/sidecar", read_only)],
    )


def test_with_fs_group_the_app_reads_through_the_group(
    tmp_path: Path, backend: Backend, token_file: Path
) -> None:
    with kubelet.Pod(tmp_path / "pod", fs_group=2000) as pod:
        init = _init(pod, backend, token_file, {"SIDECAR_FILE_GROUP": "2000"})
        assert init.returncode == 0, init.stderr
        written = pod.volume("sidecar-secrets") / "config"
        st = written.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1337, 2000, 0o440)
        state = pod.volume("sidecar-secrets-state") / "handoff.json"
        assert state.stat().st_mode & 0o777 == 0o600
        # The app's user is not the agent's: it reads through fsGroup, and even
        # a writable mount does not let it change the file.
        app = _app(pod, read_only=False)
        assert app.returncode == 0, app.stderr
        assert app.stdout.splitlines() == ["api_key: k-123", "region: eu", "refused 13"]


def test_without_fs_group_the_file_is_world_readable_only(
    tmp_path: Path, backend: Backend, token_file: Path
) -> None:
    with kubelet.Pod(tmp_path / "pod") as pod:
        init = _init(pod, backend, token_file, {})
        assert init.returncode == 0, init.stderr
        assert (pod.volume("sidecar-secrets") / "config").stat().st_mode & 0o777 == 0o444
        app = _app(pod, read_only=True)
        assert app.stdout.splitlines()[-1] in ("refused 13", "refused 30")
        assert app.stdout.splitlines()[0] == "api_key: k-123"


def test_refresher_takes_over_and_rewrites_for_the_app(
    tmp_path: Path, backend: Backend, token_file: Path
) -> None:
    """Init, then the refresher as the same user: it adopts the hand-off on the
    read-only root, rewrites the file when Vault changes, and exits 0 on SIGTERM."""
    extra = {"SIDECAR_FILE_GROUP": "2000", "SIDECAR_KV_INTERVAL": "1s"}
    with kubelet.Pod(tmp_path / "pod", fs_group=2000) as pod:
        assert _init(pod, backend, token_file, extra).returncode == 0
        port = free_port()
        refresher = pod.start(
            [*kubelet.SIDECAR_IMAGE_COMMAND, "secrets"],
            user=1337,
            group=1337,
            mounts=AGENT_MOUNTS,
            env=_env(backend, {**extra, "SIDECAR_AGENT_ADDR": f"127.0.0.1:{port}"}),
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: http_status(f"http://127.0.0.1:{port}/ready") == 200, timeout=15)
            backend.put_kv2("app/config", {"api_key": "k-456", "region": "eu"})
            written = pod.volume("sidecar-secrets") / "config"
            wait_for(lambda: b"k-456" in written.read_bytes(), what="the new version written")
            st = written.stat()
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1337, 2000, 0o440)
            app = _app(pod, read_only=True)
            assert app.stdout.splitlines()[0] == "api_key: k-456"
            assert backend.count("POST", "auth/kubernetes/login") == 1  # token handed off
        finally:
            refresher.send_signal(signal.SIGTERM)
            _, err = refresher.communicate(timeout=15)
        assert refresher.returncode == 0, err.decode()


def test_a_file_group_without_fs_group_is_refused_with_the_fix(
    tmp_path: Path, backend: Backend, token_file: Path
) -> None:
    with kubelet.Pod(tmp_path / "pod") as pod:  # no fsGroup: the agent is not in group 2000
        init = _init(pod, backend, token_file, {"SIDECAR_FILE_GROUP": "2000"})
        assert init.returncode == 1
        last = init.stderr.strip().splitlines()[-1]
        assert "SIDECAR_FILE_GROUP 2000: the agent (uid 1337, groups 1337) is not in" in last
        assert "securityContext.fsGroup" in last
        assert not (pod.volume("sidecar-secrets") / "config").exists()
