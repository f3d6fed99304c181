"""Which files to follow: glob matches under the logs path, and the copies
and renamed files that continue content the agent already followed.

Pure file-system look-ups (no state of their own): ``matches`` lists what the
globs name now, ``entries`` every regular file of some directories (a rotated
``app.log.1`` no longer matches ``*.log`` but is still read to its end), and
``find_copy`` the file whose head is a followed file's head and that is at
least as long as what was read of it: the copy a copytruncate made.
"""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass

from sidecar.logs.logfile import matches, read_head
from sidecar.logs.positions import FileState


@dataclass(frozen=True)
class Entry:
    path: str
    dev: int
    ino: int
    size: int
    mtime: float


def _entry(path: str) -> Entry | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return Entry(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime)


def matches_of(root: str, globs: tuple[str, ...]) -> list[Entry]:
    """Regular files the globs match now, sorted by name; symlinks followed."""
    found: dict[str, Entry] = {}
    for pattern in globs:
        for relative in glob.glob(pattern, root_dir=root):
            path = os.path.join(root, relative)
            if path not in found:
                entry = _entry(path)
                if entry is not None:
                    found[path] = entry
    return [found[p] for p in sorted(found)]


def entries(directories: set[str]) -> list[Entry]:
    """Every regular file directly in ``directories`` (dot-files included)."""
    result: list[Entry] = []
    for directory in sorted(directories):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            entry = _entry(os.path.join(directory, name))
            if entry is not None:
                result.append(entry)
    return result


def directories(root: str, globs: tuple[str, ...], paths: list[str]) -> set[str]:
    """The logs path, the directories the globs reach and those of known files."""
    found = {root}
    for pattern in globs:
        parent = os.path.dirname(pattern)
        if parent:
            found.update(
                os.path.join(root, d)
                for d in glob.glob(parent, root_dir=root)
                if os.path.isdir(os.path.join(root, d))
            )
    found.update(os.path.dirname(p) for p in paths)
    return found


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
    if state.fp_len == 0 and min_size > 0:
        return None
    best: Entry | None = None
    for entry in candidates:
        if (entry.dev, entry.ino) in exclude or entry.size < min_size:
            continue
        if state.fp_len == 0:
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
