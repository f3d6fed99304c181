"""Positions: how far each followed file has been acknowledged by the sink.

One JSON document, ``positions.json`` in the state volume, replaced by
``rename(2)`` of a complete temp file after every acknowledged batch (and
when a file starts or stops being followed), so a SIGKILL at any moment
leaves the previous or the next checkpoint, never a torn one. There is no
fsync: the state volume is an emptyDir, which a node crash loses together
with the pod, while a killed process loses nothing the kernel already has.

A file is known by its device and inode, checked against a fingerprint of
its first bytes (up to ``FINGERPRINT``): a reused inode or a file truncated
while the agent was down has another head. ``fid`` names one generation of a
file's content: a copytruncate starts a new generation at offset 0, while
the copy carries on the old one (same bytes at the same offsets).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sidecar.logs.errors import StateError

STATE_FILE = "positions.json"
FINGERPRINT = 1024  # bytes of a file's head that identify its content


def fingerprint(head: bytes) -> str:
    """CRC-32 and Adler-32 of the head (zlib is loaded for gzip anyway; hashlib
    would load OpenSSL at start-up). A file is also matched by inode and size."""
    return f"{zlib.crc32(head):08x}{zlib.adler32(head):08x}"


def new_fid() -> str:
    return os.urandom(6).hex()


@dataclass
class FileState:
    fid: str
    dev: int
    ino: int
    path: str  # the name it was found under: the record's file name
    fp: str  # fingerprint of the first fp_len bytes
    fp_len: int
    committed: int  # acknowledged up to this offset
    size: int = 0  # the size last seen (for the lag, and to say what a lost file held)


class Positions:
    """The checkpoint, shared by the reader (files come and go) and the shipper
    (acknowledged offsets). Thread-safe; ``save`` writes only when changed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._files: dict[str, FileState] = {}
        self._dirty = False
        self.saves = 0

    def load(self) -> list[FileState]:
        """The states of the last run (empty when none, or unreadable)."""
        try:
            document = json.loads(self.path.read_bytes())
            states = [FileState(**item) for item in document["files"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError):
            return []  # a torn or foreign file: start over, reading every file from 0
        return [s for s in states if _valid(s)]

    def check_writable(self) -> None:
        """Fail at start, not at the first acknowledgement, when the volume is unusable."""
        probe = self.directory / f".probe.{os.getpid()}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StateError(
                f"--state-dir / SIDECAR_LOGS_STATE_DIR {self.directory}: cannot write "
                f"({exc.strerror}); mount a writable volume there (the injector adds "
                "sidecar-logs-state)"
            ) from None

    def put(self, state: FileState) -> None:
        with self._lock:
            self._files[state.fid] = state
            self._dirty = True

    def drop(self, fid: str) -> None:
        with self._lock:
            if self._files.pop(fid, None) is not None:
                self._dirty = True

    def get(self, fid: str) -> FileState | None:
        with self._lock:
            return self._files.get(fid)

    def commit(self, offsets: dict[str, int]) -> None:
        """Save acknowledged end offsets (by fid; they only move forward), then
        apply them in memory, so what the lag shows as shipped is what a restart
        would not send again. StateError when the checkpoint cannot be written
        (memory moves on; the next save writes it)."""
        with self._save_lock:
            with self._lock:
                changes = {
                    fid: offset
                    for fid, offset in offsets.items()
                    if fid in self._files and offset > self._files[fid].committed
                }
                if not changes and not self._dirty:
                    return
                document = self._document(changes)
                self._dirty = False
            try:
                self._write(document)
            finally:
                with self._lock:
                    for fid, offset in changes.items():
                        state = self._files.get(fid)
                        if state is not None and offset > state.committed:
                            state.committed = offset

    def snapshot(self) -> list[FileState]:
        with self._lock:
            return [FileState(**asdict(s)) for s in self._files.values()]

    def save(self) -> bool:
        with self._save_lock:  # the reader and the shipper both save: one at a time
            return self._save()

    def _save(self) -> bool:
        with self._lock:
            if not self._dirty:
                return False
            document = self._document({})
            self._dirty = False
        self._write(document)
        return True

    def _document(self, changes: dict[str, int]) -> dict[str, Any]:
        files = []
        for state in self._files.values():
            item = asdict(state)
            item["committed"] = max(state.committed, changes.get(state.fid, 0))
            files.append(item)
        return {"version": 1, "files": files}

    def _write(self, document: dict[str, Any]) -> None:
        data = json.dumps(document, separators=(",", ":")).encode()
        tmp = self.directory / f".{STATE_FILE}.{os.getpid()}.tmp"
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except OSError as exc:
            with self._lock:
                self._dirty = True
            raise StateError(
                f"{self.path}: cannot write the positions checkpoint ({exc.strerror}); "
                "the state volume must be writable by the agent"
            ) from None
        self.saves += 1


def _valid(state: FileState) -> bool:
    return (
        isinstance(state.fid, str)
        and all(isinstance(v, int) and v >= 0 for v in (state.dev, state.ino, state.fp_len))
        and isinstance(state.committed, int)
        and state.committed >= 0
        and isinstance(state.path, str)
        and isinstance(state.fp, str)
    )
