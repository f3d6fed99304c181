"""Atomic file output shared by the secrets and config roles.

Two shapes:

* ``write_atomic``: one file, replaced by ``rename(2)`` of a fully written,
  fsynced temp file in the same directory, so a reader sees the old content
  or the new, never a partial file. Written only when the content changed.
* ``write_file_set``: a set of files that changes as a whole, the way the
  kubelet updates ConfigMap volumes: the files live in a timestamped
  directory, ``..data`` is a symlink to it, and each visible name is a symlink
  ``name -> ..data/name``. An update writes a new directory, points
  ``..data_tmp`` at it and renames that over ``..data``: a reader that opens
  files through ``..data`` sees the old set or the new set, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from sidecar.errors import OutputError

DATA_LINK = "..data"
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def write_atomic(
    path: Path, content: bytes, *, mode: int = 0o444, group: int | None = None
) -> bool:
    """Replace ``path`` with ``content``; return False when it was already so."""
    try:
        if path.read_bytes() == content and _has_mode(path, mode, group):
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"{path}: cannot read the current file ({exc.strerror})") from exc
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        # A crash between create and rename leaves this name behind, and a
        # restarted container often gets the same pid: clear it first.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        _write_new(tmp, content, mode, group)
        os.rename(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(
            f"{path}: cannot write ({exc.strerror}); the directory must be a writable "
            "volume owned by the agent's user"
        ) from exc
    return True


def _write_new(path: Path, content: bytes, mode: int, group: int | None) -> None:
    """Create ``path`` (it must not exist), fill it, set group and mode, fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        if group is not None:
            os.fchown(fd, -1, group)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _has_mode(path: Path, mode: int, group: int | None) -> bool:
    st = path.stat()
    return (st.st_mode & 0o7777) == mode and (group is None or st.st_gid == group)


def check_key(key: str) -> str:
    """A file name inside a set: no slashes, no leading dots, kubelet's alphabet."""
    if not _KEY.match(key) or key.startswith(".."):
        raise OutputError(
            f"key {key!r} cannot be a file name: use letters, digits, '-', '_' and '.', "
            "not starting with '..'"
        )
    return key


def read_file_set(root: Path) -> dict[str, bytes]:
    """The current set under ``root`` (empty when none was written yet)."""
    data = root / DATA_LINK
    if not data.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}


def write_file_set(
    root: Path, files: Mapping[str, bytes], *, mode: int = 0o444, group: int | None = None
) -> bool:
    """Make ``root`` hold exactly ``files``; return False when nothing changed."""
    for key in files:
        check_key(key)
    if read_file_set(root) == dict(files):
        return False
    try:
        return _swap(root, files, mode, group)
    except OSError as exc:
        raise OutputError(
            f"{root}: cannot write the file set ({exc.strerror}); the directory must be "
            "a writable volume owned by the agent's user"
        ) from exc


def _swap(root: Path, files: Mapping[str, bytes], mode: int, group: int | None) -> bool:
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + str(time.monotonic_ns())
    new_dir = root / stamp
    new_dir.mkdir(mode=0o755)
    for key, content in files.items():
        _write_new(new_dir / key, content, mode, group)
    if group is not None:
        os.chown(new_dir, -1, group)
    old_target = os.readlink(root / DATA_LINK) if (root / DATA_LINK).is_symlink() else None
    tmp_link = root / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp_link.unlink()
    os.symlink(stamp, tmp_link)
    os.rename(tmp_link, root / DATA_LINK)
    for key in files:
        link = root / key
        if not link.is_symlink():
            os.symlink(f"{DATA_LINK}/{key}", link)
    for entry in root.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in files:
            entry.unlink()
    if old_target and old_target != stamp:
        _remove_tree(root / old_target)
    return True


def _remove_tree(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
