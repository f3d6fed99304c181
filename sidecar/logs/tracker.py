"""The set of followed files: which to open, where to start, when to let go.

* At start, each file of the last checkpoint is found again by device, inode
  and fingerprint, wherever a rotation renamed it, and resumed at its
  acknowledged offset. One truncated while the agent was down continues from
  the copy that holds its head (copytruncate); one that is gone is reported
  with the bytes that were not shipped.
* Every poll, the globs are matched: a new file is read from its first byte
  (a file that looks like a copy of a followed one waits ``rotate_wait`` for
  the truncation that would make it that file's continuation). A followed
  file no longer under its name (renamed, deleted) is read to its end and
  closed after ``rotate_wait`` without growth.
* A truncation seen while reading (copytruncate) continues the old content
  from its copy at the first byte not shipped, and the file itself from 0 as
  a new generation.

The tracker only opens, closes and re-keys ``LogFile``s; the reader reads them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sidecar.log import Logger
from sidecar.logs import finder
from sidecar.logs.errors import StateError
from sidecar.logs.finder import Entry
from sidecar.logs.framing import Framer, Frames
from sidecar.logs.logfile import LogFile, matches, read_head
from sidecar.logs.metrics import LogsMetrics
from sidecar.logs.positions import FINGERPRINT, FileState, Positions, fingerprint, new_fid
from sidecar.logs.settings import LogsSettings

PRUNE_EVERY = 5.0  # seconds between looks for files gone from the disk
Key = tuple[int, int]  # (st_dev, st_ino)


class Tracker:
    def __init__(
        self,
        settings: LogsSettings,
        positions: Positions,
        metrics: LogsMetrics,
        log: Logger,
        want_starts: bool,
    ) -> None:
        self.settings = settings
        self.positions = positions
        self.metrics = metrics
        self.log = log
        self.want_starts = want_starts
        self.files: dict[str, LogFile] = {}  # fid -> open file
        self.known: dict[Key, str] = {}  # every file in the checkpoint -> fid
        self.deferred: dict[Key, float] = {}  # looks like a copy: since when
        self.ignored: set[Key] = set()  # rotated-looking copies of followed content
        self.globs = finder.Globs(settings.path, settings.files)
        self.warned: set[str] = set()
        self.next_prune = 0.0

    # --- start -------------------------------------------------------------------

    def resume(self, now: float) -> None:
        states = self.positions.load()
        listing = finder.entries(self._directories([s.path for s in states]))
        by_key = {(e.dev, e.ino): e for e in listing}
        for state in states:
            entry = by_key.get((state.dev, state.ino))
            head = finder.head_of(entry.path, state.fp_len) if entry else None
            if (
                entry
                and head is not None
                and matches(head, state)
                and entry.size >= state.committed
            ):
                self._open(state, entry, now)
                continue
            taken = set(self.known)
            copy = finder.find_copy(state, state.committed, listing, taken)
            if copy is not None:
                state.dev, state.ino = copy.dev, copy.ino
                self._open(state, copy, now)
                self.log.info(
                    "resumed from a copy", file=state.path, copy=copy.path, offset=state.committed
                )
            elif state.size > state.committed:
                self.log.warning(
                    "file gone while the agent was down; its last bytes were not shipped",
                    file=state.path,
                    lost_bytes=state.size - state.committed,
                )
        self.positions.save()

    # --- every poll --------------------------------------------------------------

    def scan(self, now: float, emit: Callable[[LogFile, Frames], None]) -> None:
        patterns = self.globs.directories()
        bases: dict[str, set[str]] = {}
        for state in self.positions.snapshot():
            bases.setdefault(os.path.dirname(state.path), set()).add(os.path.basename(state.path))
        for directory in sorted(set(patterns) | set(bases)):
            device, items = finder.listing(directory)
            names = patterns.get(directory, [])
            followed = bases.get(directory, set()) | {
                i.name for i in items if finder.name_matches(i.name, names)
            }
            for item in items:
                if (device, item.ino) in self.known or (device, item.ino) in self.ignored:
                    continue  # known by the inode the directory lists: no stat
                if finder.name_matches(item.name, names):
                    self._discover(item.path, item.path, now)
                else:
                    base = finder.sibling_of(item.name, followed)
                    if base is not None:
                        self._discover(item.path, os.path.join(directory, base), now, sibling=True)
        for file in list(self.files.values()):
            if file.truncated():  # seen here too: a reader held back by the sink reads nothing
                self.truncated(file, now, emit)
            self._check_rotated(file, now)
            if (
                file.rotated_since is not None
                and file.size <= file.read_pos  # fresh: truncated() just looked
                and now - file.rotated_since >= self.settings.rotate_wait
                and file.idle_for(now) >= self.settings.rotate_wait
            ):
                emit(file, file.framer.flush(now, force=True))
                self._close(file)
        if now >= self.next_prune:
            self.next_prune = now + PRUNE_EVERY
            self._prune()
        self._save()

    def _save(self) -> None:
        """A new file or generation is in the checkpoint before any of its records
        leave: a restart then knows it (Elasticsearch ids stay the same)."""
        try:
            self.positions.save()
        except StateError as exc:
            self._warn_once("", str(exc))

    def truncated(self, file: LogFile, now: float, emit: Callable[[LogFile, Frames], None]) -> None:
        """``file`` shrank or its head changed: old content from a copy, the file anew."""
        old = file.state
        start = file.framer.position()
        listing = finder.entries({os.path.dirname(old.path)})
        copy = finder.find_copy(old, start, listing, set(self.known))
        if copy is None:  # what is held is all there will be of those lines
            emit(file, file.framer.flush(now, force=True))
        fresh = FileState(new_fid(), old.dev, old.ino, old.path, "", 0, 0, 0)
        self.positions.put(fresh)
        self.files.pop(old.fid, None)
        file.state = fresh
        file.framer = self._framer(0)
        file.read_pos, file.at_eof = 0, False
        # the new content's first bytes now: a second truncation before the next read
        # is then still seen (its head differs)
        file.head = read_head(file.fd)
        fresh.fp, fresh.fp_len = fingerprint(file.head), len(file.head)
        self.files[fresh.fid] = file
        self.known[(old.dev, old.ino)] = fresh.fid
        if copy is not None:
            old.dev, old.ino = copy.dev, copy.ino
            self.deferred.pop((copy.dev, copy.ino), None)
            self._open(old, copy, now, rotated=True)
            self.metrics.truncations.inc(file=old.path, copy="found")
            self._save()
            self.log.info(
                "file truncated; the rest is read from its copy",
                file=old.path,
                copy=copy.path,
                offset=start,
            )
            return
        self.positions.drop(old.fid)
        self._save()
        self.metrics.truncations.inc(file=old.path, copy="missing")
        self.log.warning(
            "file truncated and no copy holds its first bytes: lines written after the last "
            "read and before the truncation may be lost (with logrotate, use copytruncate "
            "with delaycompress, or rename rotation)",
            file=old.path,
            offset=start,
        )

    def lag(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for file in list(self.files.values()):
            result[file.path] = result.get(file.path, 0) + file.lag()
        return result

    # --- internals ---------------------------------------------------------------

    def _framer(self, offset: int) -> Framer:
        s = self.settings
        return Framer(
            offset,
            max_line=s.max_line,
            truncate=s.long_lines == "truncate",
            multiline=s.multiline,
            flush_timeout=s.flush_timeout,
            want_starts=self.want_starts,
        )

    def _open(
        self,
        state: FileState,
        entry: Entry,
        now: float,
        rotated: bool = False,
        offset: int | None = None,
    ) -> None:
        try:
            opened = finder.open_file(entry.path)
        except OSError as exc:
            self._warn_once(
                entry.path,
                f"cannot read ({exc.strerror}); the app must write files "
                "the agent can read (mode 0644, or 0640 with the pod's fsGroup)",
            )
            return
        if opened is None:
            return
        fd, st = opened
        if (st.st_dev, st.st_ino) != (state.dev, state.ino):
            os.close(fd)  # replaced between the look-up and the open: next scan
            return
        start = state.committed if offset is None else offset
        file = LogFile(state, fd, self._framer(start), now)
        file.head = read_head(fd)
        state.fp, state.fp_len = fingerprint(file.head), len(file.head)
        file.size = st.st_size
        if rotated or entry.path != state.path:
            file.rotated_since = now
        self.files[state.fid] = file
        self.known[(state.dev, state.ino)] = state.fid
        self.positions.put(state)
        self.metrics.files.set(len(self.files))
        self.warned.discard(entry.path)
        self.log.info(
            "following",
            file=state.path,
            offset=start,
            **({"as": entry.path} if entry.path != state.path else {}),
        )

    def _close(self, file: LogFile) -> None:
        file.close()
        self.files.pop(file.fid, None)
        self.metrics.files.set(len(self.files))
        self.log.info("done with rotated file", file=file.path, offset=file.read_pos)

    def _discover(self, path: str, name: str, now: float, sibling: bool = False) -> None:
        """A file not known by its listed inode: known after all (a symlink), a copy of
        content already followed, or new: followed from its first byte."""
        entry = finder.stat_entry(path)
        if entry is None:
            return
        key = (entry.dev, entry.ino)
        fid = self.known.get(key)
        if fid is not None:
            if fid not in self.files and not sibling:
                self._reopen_if_grown(fid, entry, now)
            return
        if len(self.files) >= self.settings.max_files:
            self._warn_once(
                path,
                "too many files: not followed; raise --max-files "
                "(SIDECAR_LOGS_MAX_FILES) or narrow the globs",
            )
            return
        if sibling:
            copy = self._copy_of_known(entry)
            if copy is None:
                return  # empty yet: looked at again at the next poll
            if copy:
                self.ignored.add(key)
                return
        if not sibling and self._copy_of_live(entry, now):
            return
        state = FileState(new_fid(), entry.dev, entry.ino, name, "", 0, 0, entry.size)
        self.positions.put(state)
        self._open(state, entry, now, rotated=sibling)
        if sibling:
            self.log.info(
                "found a rotated file not seen before; reading it from the start",
                file=name,
                name=path,
            )

    def _copy_of_known(self, entry: Entry) -> bool | None:
        """Whether a rotated-looking file starts like content already followed
        (None: it is empty, nothing to tell yet)."""
        head = finder.head_of(entry.path, FINGERPRINT)
        if not head:
            return None
        return any(s.fp_len and matches(head, s) for s in self.positions.snapshot())

    def _reopen_if_grown(self, fid: str, entry: Entry, now: float) -> None:
        state = self.positions.get(fid)
        if state is not None and entry.size > max(state.committed, state.size):
            self._open(state, entry, now, rotated=True, offset=max(state.committed, state.size))

    def _copy_of_live(self, entry: Entry, now: float) -> bool:
        key = (entry.dev, entry.ino)
        head = finder.head_of(entry.path, 1024) or b""
        for file in self.files.values():
            n = min(len(head), len(file.head))
            if n and head[:n] == file.head[:n]:
                since = self.deferred.setdefault(key, now)
                if now - since < self.settings.rotate_wait:
                    return True
        self.deferred.pop(key, None)
        return False

    def _check_rotated(self, file: LogFile, now: float) -> None:
        if file.rotated_since is not None:
            return
        try:
            st = os.stat(file.path)
            moved = (st.st_dev, st.st_ino) != (file.state.dev, file.state.ino)
            moved = moved or os.fstat(file.fd).st_nlink == 0
        except OSError:
            moved = True
        if moved:
            file.rotated_since = now
            self.metrics.rotations.inc(file=file.path)
            self.log.info("file rotated away; reading it to its end", file=file.path)

    def _prune(self) -> None:
        """Forget closed files that are gone from the disk."""
        states = self.positions.snapshot()
        present = {
            (e.dev, e.ino) for e in finder.entries(self._directories([s.path for s in states]))
        }
        for state in states:
            key = (state.dev, state.ino)
            if state.fid not in self.files and key not in present:
                self.positions.drop(state.fid)
                if self.known.get(key) == state.fid:
                    del self.known[key]
        self.deferred = {k: v for k, v in self.deferred.items() if k in present}
        self.ignored &= present

    def _directories(self, paths: list[str]) -> set[str]:
        return set(self.globs.directories()) | {os.path.dirname(p) for p in paths}

    def _warn_once(self, path: str, message: str) -> None:
        if path not in self.warned:
            self.warned.add(path)
            self.log.warning(message, file=path)
