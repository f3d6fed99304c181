"""One followed file: an open descriptor read from a known offset.

The descriptor stays open across a rename, so a file rotated by rename and
create is read to its end under its first name. ``read`` returns the next
chunk, or ``TRUNCATED`` when the file shrank below what was read or its head
changed (copytruncate, or the app truncating its own log): the chunk read in
the same step is then discarded, since it may belong to the new content.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from sidecar.logs.framing import Framer
from sidecar.logs.positions import FINGERPRINT, FileState, fingerprint

CHUNK = 128 * 1024
MIN_READ = 4096


class Truncated:
    """Sentinel: the file was truncated under us."""


TRUNCATED = Truncated()


@dataclass
class Growth:
    data: bytes
    offset: int


class LogFile:
    def __init__(self, state: FileState, fd: int, framer: Framer, now: float) -> None:
        self.state = state
        self.fd = fd
        self.framer = framer
        self.read_pos = framer.position()
        self.head = b""  # the first bytes, compared on every read (up to FINGERPRINT)
        self.size = 0
        self.last_growth = now
        self.rotated_since: float | None = None  # no longer under its name, or deleted
        self.at_eof = False

    @property
    def fid(self) -> str:
        return self.state.fid

    @property
    def path(self) -> str:
        return self.state.path

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def read(self, now: float, size: int = CHUNK) -> Growth | Truncated | None:
        """The next chunk (at most ``size`` bytes), ``TRUNCATED``, or None at the end."""
        data = os.pread(self.fd, size, self.read_pos)
        size = os.fstat(self.fd).st_size
        self.size = self.state.size = size
        if size < self.read_pos or not self._head_intact(size):
            return TRUNCATED
        if not data:
            self.at_eof = True
            return None
        offset = self.read_pos
        self.read_pos += len(data)
        self.at_eof = self.read_pos >= size
        self.last_growth = now
        return Growth(data, offset)

    def truncated(self) -> bool:
        """Whether the file shrank below what was read, or its head changed."""
        size = os.fstat(self.fd).st_size
        self.size = self.state.size = size
        return size < self.read_pos or not self._head_intact(size)

    def _head_intact(self, size: int) -> bool:
        """Compare the known head; extend it while the file is shorter than FINGERPRINT."""
        if self.head and os.pread(self.fd, len(self.head), 0) != self.head:
            return False
        if len(self.head) < FINGERPRINT and size > len(self.head):
            self.head = os.pread(self.fd, FINGERPRINT, 0)
            self.state.fp = fingerprint(self.head)
            self.state.fp_len = len(self.head)
        return True

    def lag(self) -> int:
        return max(0, self.size - self.state.committed)

    def idle_for(self, now: float) -> float:
        return now - self.last_growth


def read_head(fd: int, length: int = FINGERPRINT) -> bytes:
    return os.pread(fd, length, 0)


def matches(head: bytes, state: FileState) -> bool:
    """Whether a file starting with ``head`` is the content ``state`` describes."""
    if state.fp_len == 0:
        return True
    return len(head) >= state.fp_len and fingerprint(head[: state.fp_len]) == state.fp
