"""Which files to follow: glob matches under the logs path, their rotated
siblings, and the copies that continue content the agent already followed.

File-system look-ups with no state of their own:

* ``Globs`` splits each pattern into a directory part and a name part, and
  lists the directories they reach (one ``scandir`` each: the inode comes
  with the entry, so known files cost no ``stat``);
* a *sibling* is a file named like a followed one plus a rotation suffix
  (``app.log.1``, ``app.log-20260101``; compressed ones excluded): a file
  renamed by a rotation the agent did not see (several rotations between two
  polls, or while it was down) is still found by it;
* ``find_copy``: the file whose head is a followed file's head and that holds
  at least what was read of it, i.e. the copy a copytruncate made.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from dataclasses import dataclass

from sidecar.logs.logfile import matches, read_head
from sidecar.logs.positions import FileState

COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".Z", ".tgz")
ROTATION_SEPARATORS = ".-_"


@dataclass(frozen=True)
class Entry:
    path: str
    dev: int
    ino: int
    size: int
    mtime: float


@dataclass(frozen=True)
class Listed:
    path: str
    name: str
    ino: int


def stat_entry(path: str) -> Entry | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return Entry(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime)


class Globs:
    """The patterns, as (directory pattern, name pattern) pairs under ``root``."""

    def __init__(self, root: str, patterns: tuple[str, ...]) -> None:
        self.root = root
        self.parts = [os.path.split(p) for p in patterns]

    def directories(self) -> dict[str, list[str]]:
        """Each directory the patterns reach -> the name patterns that apply there."""
        found: dict[str, list[str]] = {}
        for directory, name in self.parts:
            if not directory:
                found.setdefault(self.root, []).append(name)
                continue
            for relative in glob.glob(directory, root_dir=self.root):
                path = os.path.join(self.root, relative)
                if os.path.isdir(path):
                    found.setdefault(path, []).append(name)
        return found


def name_matches(name: str, patterns: list[str]) -> bool:
    """Glob semantics: a leading dot is matched only by a pattern that has one."""
    return any(
        fnmatch.fnmatchcase(name, p) and (not name.startswith(".") or p.startswith("."))
        for p in patterns
    )


def sibling_of(name: str, bases: set[str]) -> str | None:
    """The followed name ``name`` is a rotation of (``app.log.1`` -> ``app.log``)."""
    if name.endswith(COMPRESSED):
        return None
    for base in bases:
        if (
            len(name) > len(base) + 1
            and name.startswith(base)
            and (name[len(base)] in ROTATION_SEPARATORS)
        ):
            return base
    return None


def listing(directory: str) -> tuple[int, list[Listed]]:
    """(the directory's device, its regular files and symlinks); empty when unreadable."""
    try:
        device = os.stat(directory).st_dev
        with os.scandir(directory) as entries:
            items = [
                Listed(e.path, e.name, e.inode())
                for e in entries
                if e.is_file(follow_symlinks=False) or e.is_symlink()
            ]
    except OSError:
        return 0, []
    return device, items


def entries(directories: set[str]) -> list[Entry]:
    """Every regular file directly in ``directories``, with its ``stat``."""
    result = []
    for directory in sorted(directories):
        for item in listing(directory)[1]:
            entry = stat_entry(item.path)
            if entry is not None:
                result.append(entry)
    return result


def head_of(path: str, length: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return read_head(fd, length)
    except OSError:
        return None
    finally:
        os.close(fd)


def find_copy(
    state: FileState, min_size: int, candidates: list[Entry], exclude: set[tuple[int, int]]
) -> Entry | None:
    """The newest candidate that starts like ``state``'s content and holds at
    least ``min_size`` bytes (so the bytes from there on are its continuation)."""
    if state.fp_len == 0:
        return None
    best: Entry | None = None
    for entry in candidates:
        if (entry.dev, entry.ino) in exclude or entry.size < min_size:
            continue
        head = head_of(entry.path, state.fp_len)
        if head is not None and matches(head, state) and (best is None or entry.mtime > best.mtime):
            best = entry
    return best


def open_file(path: str) -> tuple[int, os.stat_result] | None:
    """Open for reading (non-blocking: a FIFO never blocks the reader); None
    when it is gone or not a regular file; OSError when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st
