from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sidecar.errors import OutputError
from sidecar.files import read_file_set, write_atomic, write_file_set


def test_write_atomic_only_when_changed(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    assert write_atomic(target, b"one", mode=0o440) is True
    first = target.stat().st_ino
    assert write_atomic(target, b"one", mode=0o440) is False
    assert target.stat().st_ino == first
    assert write_atomic(target, b"two", mode=0o440) is True
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o440
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temp files left


def test_write_atomic_mode_change_rewrites(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(target, b"x", mode=0o444)
    assert write_atomic(target, b"x", mode=0o440) is True
    assert target.stat().st_mode & 0o777 == 0o440


def test_write_atomic_into_missing_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="missing/f: cannot write"):
        write_atomic(tmp_path / "missing" / "f", b"x")


def test_file_set_adds_replaces_and_removes_keys(tmp_path: Path) -> None:
    root = tmp_path / "config"
    assert write_file_set(root, {"a.yaml": b"1", "b.yaml": b"2"}) is True
    assert (root / "a.yaml").read_bytes() == b"1"
    assert os.readlink(root / "a.yaml") == "..data/a.yaml"
    assert write_file_set(root, {"a.yaml": b"1", "b.yaml": b"2"}) is False
    assert write_file_set(root, {"a.yaml": b"3"}) is True
    assert read_file_set(root) == {"a.yaml": b"3"}
    assert not (root / "b.yaml").exists()
    assert not (root / "b.yaml").is_symlink()
    data_dirs = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(data_dirs) == 1  # the old generation was removed


@pytest.mark.parametrize("key", ["../x", "..data", "a/b", "", "a b"])
def test_file_set_rejects_unsafe_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(OutputError, match="cannot be a file name"):
        write_file_set(tmp_path, {key: b"x"})


def test_reader_never_sees_a_mixed_set(tmp_path: Path) -> None:
    root = tmp_path / "config"
    write_file_set(root, {"left": b"0", "right": b"0"})
    stop = threading.Event()
    mixed: list[tuple[bytes, bytes]] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            # Read both through one resolution of ..data, as an app reading
            # a consistent snapshot does.
            data = root / os.readlink(root / "..data")
            try:
                pair = ((data / "left").read_bytes(), (data / "right").read_bytes())
            except FileNotFoundError:
                continue  # the generation it resolved was replaced: read again
            reads += 1
            if pair[0] != pair[1]:
                mixed.append(pair)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(1, 1001):
        value = str(i).encode()
        write_file_set(root, {"left": value, "right": value})
    stop.set()
    thread.join()
    assert mixed == []
    assert reads > 0
    assert read_file_set(root) == {"left": b"1000", "right": b"1000"}


def test_a_stale_temp_file_from_a_crash_does_not_block_writes(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    (tmp_path / f".secret.{os.getpid()}.tmp").write_bytes(b"half")
    assert write_atomic(target, b"whole") is True
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]
