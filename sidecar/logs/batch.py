"""Batches: encoded records, compressed as they are added, with the positions
they carry.

A ``Batch`` is what one request sends and one acknowledgement commits: its
payload (gzip, or plain for stdout), its record count, and per file
generation the offset just past its last record. ``BatchBuilder`` encodes
each piece of records (``records.Encoder``) into a running gzip stream, so a
batch waiting for the sink holds its compressed size in memory, not its
records. ``Run`` keeps which file each record came from, in order, for
per-file metrics and for a sink that answers per record.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from sidecar.logs.framing import Frames
from sidecar.logs.records import Encoder, FileMeta

GZIP_LEVEL = 1  # the fastest: the repeated metadata compresses well anyway


@dataclass
class Run:
    path: str
    records: int
    source_bytes: int


@dataclass
class Batch:
    seq: int
    payload: bytes
    compressed: bool
    records: int
    raw_bytes: int
    positions: dict[str, int]  # fid -> offset after its last record in this batch
    runs: list[Run]
    created: float

    def paths_of(self, indexes: list[int]) -> dict[str, int]:
        """How many of the records at ``indexes`` (sorted) came from each file."""
        counts: dict[str, int] = {}
        bounds: list[tuple[int, str]] = []
        end = 0
        for run in self.runs:
            end += run.records
            bounds.append((end, run.path))
        position = 0
        for index in indexes:
            while position < len(bounds) - 1 and index >= bounds[position][0]:
                position += 1
            path = bounds[position][1]
            counts[path] = counts.get(path, 0) + 1
        return counts


@dataclass
class BatchBuilder:
    encoder: Encoder
    compress: bool
    max_bytes: int
    seq: int = 0
    records: int = 0
    raw_bytes: int = 0
    created: float = 0.0
    _parts: list[bytes] = field(default_factory=list)
    _positions: dict[str, int] = field(default_factory=dict)
    _runs: list[Run] = field(default_factory=list)
    _zip: zlib._Compress | None = None

    @property
    def empty(self) -> bool:
        return self.records == 0

    @property
    def full(self) -> bool:
        return self.raw_bytes >= self.max_bytes

    def add(self, meta: FileMeta, frames: Frames, now: float, now_ns: int) -> None:
        if not frames.messages:
            return
        data = self.encoder.encode(meta, frames, now_ns).encode()
        if self.records == 0:
            self.created = now
            if self.compress:
                self._zip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
            self._write(self.encoder.prefix)
        else:
            self._write(self.encoder.separator)
        self._write(data)
        self.records += len(frames.messages)
        self._positions[meta.fid] = frames.end
        if self._runs and self._runs[-1].path == meta.path:
            self._runs[-1].records += len(frames.messages)
            self._runs[-1].source_bytes += frames.source_bytes
        else:
            self._runs.append(Run(meta.path, len(frames.messages), frames.source_bytes))

    def _write(self, data: bytes) -> None:
        if not data:
            return
        self.raw_bytes += len(data)
        self._parts.append(self._zip.compress(data) if self._zip is not None else data)

    def close(self) -> Batch:
        self._write(self.encoder.suffix)
        if self._zip is not None:
            self._parts.append(self._zip.flush())
        self.seq += 1
        batch = Batch(
            seq=self.seq,
            payload=b"".join(self._parts),
            compressed=self._zip is not None,
            records=self.records,
            raw_bytes=self.raw_bytes,
            positions=self._positions,
            runs=self._runs,
            created=self.created,
        )
        self.records = self.raw_bytes = 0
        self._parts, self._positions, self._runs, self._zip = [], {}, [], None
        return batch
