"""The kubelet emulation itself: what it promises the role tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubelet import Mount, Pod, available

ok, why = available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

PY = sys.executable


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[Pod]:
    with Pod(tmp_path) as pod:
        yield pod


def test_only_volumes_are_writable_and_user_is_applied(pod: Pod) -> None:
    script = (
        "import os, pathlib\n"
        "print(os.getuid(), os.getgid())\n"
        "pathlib.Path('/data/out').write_text('hello')\n"
        "for p in ('/tmp/x', '/etc/x'):\n"
        "    try:\n"
        "        open(p, 'w')\n"
        "        print('wrote', p)\n"
        "    except OSError as e:\n"
        "        print('refused', p, e.errno)\n"
        "for l in open('/proc/self/status'):\n"
        "    if l.startswith(('CapEff', 'NoNewPrivs')):\n"
        "        print(' '.join(l.split()))\n"
    )
    result = pod.run([PY, "-c", script], user=1337, group=1337, mounts=[Mount("data", "/data")])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1337 1337"
    assert "refused /tmp/x 30" in lines  # EROFS
    assert "refused /etc/x 30" in lines
    assert "CapEff: 0000000000000000" in lines
    assert "NoNewPrivs: 1" in lines
    written = pod.volume("data") / "out"
    assert written.read_text() == "hello"
    assert written.stat().st_uid == 1337


def test_read_only_mount_and_fs_group(pod: Pod) -> None:
    pod.fs_group = 2000
    writer = pod.run(
        [
            PY,
            "-c",
            "import os; os.umask(0o027); open('/v/f', 'w').write('x'); os.chmod('/v/f', 0o440)",
        ],
        user=1337,
        group=1337,
        mounts=[Mount("v", "/v")],
    )
    assert writer.returncode == 0, writer.stderr
    assert (pod.volume("v") / "f").stat().st_gid == 2000  # setgid directory
    reader = pod.run(
        [PY, "-c", "print(open('/v/f').read()); open('/v/g', 'w')"],
        user=1000,
        group=1000,
        mounts=[Mount("v", "/v", read_only=True)],
    )
    assert reader.stdout.strip() == "x"
    assert "Read-only file system" in reader.stderr


def test_mount_points_created_on_the_host_are_removed(tmp_path: Path) -> None:
    with Pod(tmp_path) as pod:
        pod.run([PY, "-c", "pass"], user=1337, group=1337, mounts=[Mount("v", "/kubelet-test/a")])
        assert Path("/kubelet-test/a").is_dir()
    assert not Path("/kubelet-test").exists()
