"""Bytes of one file -> records: lines, partial lines, long lines, multiline.

``Framer.feed(chunk)`` takes the next bytes of a file and returns the records
they complete, with the file offset just past the last byte those records
consumed (``Frames.end``): the position a checkpoint may record once they are
acknowledged. Bytes that do not make a record yet are held:

* a last line without its newline waits for it, and is shipped on its own
  after ``flush_timeout`` without growth (``flush``), or at shutdown;
* a line longer than ``max_line`` bytes is split into parts of at most
  ``max_line`` bytes (cut on a UTF-8 character boundary), every part but the
  last marked ``partial``; or, with ``truncate``, its first ``max_line`` bytes
  are shipped marked ``truncated:N`` (N bytes dropped). Never dropped silently;
* with a multiline pattern, a line that does not match it is appended to the
  record before it (a stack trace); a record ends when the next matching line
  arrives, after ``flush_timeout`` without a new line, or at ``max_line``
  bytes (then marked ``partial``).

Text is UTF-8; invalid bytes appear as ``\\xNN``. A trailing ``\\r`` is removed.
The common case (no multiline, no line over the limit) decodes a whole chunk
at once and splits it in C.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import accumulate
from operator import add

PARTIAL = "partial"


@dataclass
class Frames:
    """Records completed by one ``feed``/``flush``; ``marks``/``starts`` are
    None when no record is marked / when start offsets were not asked for."""

    messages: list[str] = field(default_factory=list)
    starts: list[int] | None = None
    marks: list[str] | None = None
    end: int = 0
    source_bytes: int = 0  # bytes of the file these records cover


@dataclass
class _Group:
    lines: list[str]
    start: int
    size: int
    since: float


def utf8_cut(data: bytes, limit: int) -> int:
    """The largest cut <= limit that does not split a UTF-8 character."""
    cut = limit
    while cut > limit - 4 and cut > 0 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut if cut > 0 else limit


def decode(data: bytes) -> str:
    if data.endswith(b"\r"):
        data = data[:-1]
    return data.decode("utf-8", "backslashreplace")


class Framer:
    def __init__(
        self,
        offset: int,
        *,
        max_line: int,
        truncate: bool = False,
        multiline: re.Pattern[str] | None = None,
        flush_timeout: float = 5.0,
        want_starts: bool = False,
    ) -> None:
        self.max_line = max_line
        self.truncate = truncate
        self.multiline = multiline
        self.flush_timeout = flush_timeout
        self.want_starts = want_starts
        self.pending = b""  # the held line (with truncate: its head only)
        self.pending_start = offset  # file offset of the held line
        self.pending_since = 0.0  # when it last grew
        self.skipped = 0  # truncate: bytes of the held line past its head
        self.group: _Group | None = None

    def position(self) -> int:
        """The offset of the first byte no emitted record covers yet."""
        return self.group.start if self.group is not None else self.pending_start

    def held(self) -> int:
        """Bytes read but not yet in a record."""
        return len(self.pending) + self.skipped + (self.group.size if self.group else 0)

    def feed(self, chunk: bytes, now: float) -> Frames:
        out = Frames(starts=[] if self.want_starts else None)
        start = self.position()
        if self.skipped:
            chunk = self._continue_truncated(out, chunk, now)
        if chunk:
            data = self.pending + chunk if self.pending else chunk
            base = self.pending_start
            cut = data.rfind(b"\n")
            self.pending_since = now
            if cut < 0:
                self.pending = data
            else:
                body, self.pending = data[:cut], data[cut + 1 :]
                self.pending_start = base + cut + 1
                if not self._fast(out, body, base):
                    self._slow(out, body.split(b"\n"), base, now)
            self._hold_long(out, now)
        return self._finish(out, start)

    def flush(self, now: float, force: bool = False) -> Frames:
        """Ship what waited ``flush_timeout`` without growth (everything with ``force``)."""
        out = Frames(starts=[] if self.want_starts else None)
        start = self.position()
        if (self.pending or self.skipped) and (
            force or now - self.pending_since >= self.flush_timeout
        ):
            line, base, skipped = self.pending, self.pending_start, self.skipped
            self.pending, self.skipped = b"", 0
            self.pending_start = base + len(line) + skipped
            mark = f"truncated:{skipped}" if skipped else ""
            self._emit(out, decode(line), base, len(line) + skipped, self.pending_since, mark)
        group = self.group
        if group is not None and (force or now - group.since >= self.flush_timeout):
            self._emit_group(out)
        return self._finish(out, start)

    # --- internals ---------------------------------------------------------------

    def _finish(self, out: Frames, start: int) -> Frames:
        out.end = self.position()
        out.source_bytes = max(0, out.end - start)
        return out

    def _fast(self, out: Frames, body: bytes, base: int) -> bool:
        """No multiline and no long line: decode once, split in C."""
        if self.multiline is not None:
            return False
        text = body.decode("utf-8", "backslashreplace")
        lines = text.split("\n")
        ascii_only = text.isascii()
        sized = lines if ascii_only else body.split(b"\n")
        if len(body) > self.max_line and max(map(len, sized)) > self.max_line:
            return False
        if out.starts is not None:
            out.starts.append(base)
            out.starts.extend(
                map(add, accumulate(map(len, sized)), range(base + 1, base + len(lines)))
            )
        if "\r" in text:
            lines = [m[:-1] if m.endswith("\r") else m for m in lines]
        if out.marks is not None:
            out.marks.extend([""] * len(lines))
        out.messages.extend(lines)
        return True

    def _slow(self, out: Frames, raw_lines: list[bytes], base: int, now: float) -> None:
        offset = base
        for raw in raw_lines:
            size = len(raw) + 1
            if len(raw) <= self.max_line:
                self._emit(out, decode(raw), offset, size, now)
            elif self.truncate:
                cut = utf8_cut(raw, self.max_line)
                self._emit(out, decode(raw[:cut]), offset, size, now, f"truncated:{len(raw) - cut}")
            else:
                done = 0
                while len(raw) - done > self.max_line:
                    cut = done + utf8_cut(raw[done:], self.max_line)
                    part = raw[done:cut]
                    self._emit(out, decode(part), offset + done, cut - done, now, PARTIAL)
                    done = cut
                self._emit(out, decode(raw[done:]), offset + done, size - done, now)
            offset += size

    def _hold_long(self, out: Frames, now: float) -> None:
        """A held line over the limit: ship its full parts now (split), or keep
        its head and count the rest (truncate): memory stays bounded."""
        while len(self.pending) > self.max_line:
            cut = utf8_cut(self.pending, self.max_line)
            if self.truncate:
                self.skipped += len(self.pending) - cut
                self.pending = self.pending[:cut]
                return
            part, self.pending = self.pending[:cut], self.pending[cut:]
            self._emit(out, decode(part), self.pending_start, cut, now, PARTIAL)
            self.pending_start += cut

    def _continue_truncated(self, out: Frames, chunk: bytes, now: float) -> bytes:
        """More of a line being truncated: count it; at its newline ship the head."""
        newline = chunk.find(b"\n")
        if newline < 0:
            self.skipped += len(chunk)
            self.pending_since = now
            return b""
        head, start, skipped = self.pending, self.pending_start, self.skipped + newline
        self.pending, self.skipped = b"", 0
        self.pending_start = start + len(head) + skipped + 1
        self._emit(out, decode(head), start, len(head) + skipped + 1, now, f"truncated:{skipped}")
        return chunk[newline + 1 :]

    def _emit(
        self, out: Frames, text: str, start: int, size: int, now: float, mark: str = ""
    ) -> None:
        if self.multiline is None:
            self._append(out, text, start, mark)
            return
        group = self.group
        if mark:  # a part of an over-long line ships on its own, after the record before it
            if group is not None:
                self._emit_group(out)
            self._append(out, text, start, mark)
            return
        if group is not None and self.multiline.match(text) is None:
            if group.size + size <= self.max_line:
                group.lines.append(text)
                group.size += size
                group.since = now
                return
            self._emit_group(out, PARTIAL)  # too long: ship it marked, carry on with the rest
        elif group is not None:
            self._emit_group(out)
        self.group = _Group([text], start, size, now)

    def _emit_group(self, out: Frames, mark: str = "") -> None:
        group = self.group
        assert group is not None
        self.group = None
        self._append(out, "\n".join(group.lines), group.start, mark)

    def _append(self, out: Frames, text: str, start: int, mark: str) -> None:
        if mark and out.marks is None:
            out.marks = [""] * len(out.messages)
        out.messages.append(text)
        if out.marks is not None:
            out.marks.append(mark)
        if out.starts is not None:
            out.starts.append(start)
