"""Bytes -> records: positions, partial lines, long lines, multiline, encodings."""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.logs.framing import PARTIAL, Framer, Frames, utf8_cut


def framer(**kwargs: object) -> Framer:
    options: dict[str, object] = {"max_line": 64, "flush_timeout": 5.0, "want_starts": True}
    options.update(kwargs)
    return Framer(0, **options)  # type: ignore[arg-type]


def test_complete_lines_with_their_start_offsets_and_the_end_position() -> None:
    f = framer()
    out = f.feed(b"one\ntwo\nthree\n", 0.0)
    assert out.messages == ["one", "two", "three"]
    assert out.starts == [0, 4, 8]
    assert out.end == 14
    assert out.source_bytes == 14
    assert out.marks is None


def test_a_partial_line_waits_for_its_newline_and_is_not_covered_by_the_position() -> None:
    f = framer()
    out = f.feed(b"one\ntw", 0.0)
    assert out.messages == ["one"]
    assert out.end == 4
    assert f.held() == 2
    out = f.feed(b"o\n", 1.0)
    assert out.messages == ["two"]
    assert out.starts == [4]
    assert out.end == 8


def test_a_partial_line_is_flushed_after_the_timeout_without_growth() -> None:
    f = framer(flush_timeout=5.0)
    f.feed(b"last words", 0.0)
    assert f.flush(4.9).messages == []
    f.feed(b"!", 4.0)  # growth restarts the wait
    assert f.flush(8.9).messages == []
    out = f.flush(9.0)
    assert out.messages == ["last words!"]
    assert out.end == 11
    assert f.held() == 0
    assert f.feed(b" more\n", 10.0).messages == [" more"]


def test_force_flush_ships_everything_held() -> None:
    f = framer()
    f.feed(b"no newline", 0.0)
    assert f.flush(0.0, force=True).messages == ["no newline"]


def test_crlf_and_invalid_utf8_lose_nothing() -> None:
    f = framer()
    out = f.feed(b"dos line\r\nbad \xff\xfe byte\n\xc3\xa9t\xc3\xa9\n", 0.0)
    assert out.messages == ["dos line", "bad \\xff\\xfe byte", "été"]
    assert out.starts == [0, 10, 22]


def test_a_long_line_is_split_into_marked_parts_on_character_boundaries() -> None:
    f = framer(max_line=10)
    line = "ab" + "é" * 10  # 22 bytes
    out = f.feed(line.encode() + b"\nnext\n", 0.0)
    assert "".join(out.messages[:-1]) == line
    assert all(len(m.encode()) <= 10 for m in out.messages)
    assert out.marks == [PARTIAL, PARTIAL, "", ""]
    assert out.messages[-1] == "next"
    assert out.end == 28


def test_a_long_line_without_newline_is_shipped_in_parts_as_it_grows() -> None:
    f = framer(max_line=10)
    out = f.feed(b"x" * 25, 0.0)
    assert out.messages == ["x" * 10, "x" * 10]
    assert out.marks == [PARTIAL, PARTIAL]
    assert f.held() == 5
    assert out.end == 20
    out = f.feed(b"y\n", 1.0)
    assert out.messages == ["xxxxxy"]
    assert out.marks is None
    assert out.end == 27


def test_truncate_keeps_the_head_and_counts_what_was_dropped() -> None:
    f = framer(max_line=10, truncate=True)
    out = f.feed(b"0123456789abcdef\nok\n", 0.0)
    assert out.messages == ["0123456789", "ok"]
    assert out.marks == ["truncated:6", ""]
    # a long line arriving in pieces: memory holds only the head
    out = f.feed(b"A" * 30, 1.0)
    assert out.messages == []
    assert f.held() == 30
    assert len(f.pending) == 10
    out = f.feed(b"B" * 5 + b"\ntail\n", 2.0)
    assert out.messages == ["A" * 10, "tail"]
    assert out.marks == ["truncated:25", ""]
    assert out.starts == [20, 56]
    assert out.end == 61


def test_truncated_line_still_growing_is_flushed_with_what_was_dropped_so_far() -> None:
    f = framer(max_line=10, truncate=True, flush_timeout=1.0)
    f.feed(b"Z" * 15, 0.0)
    out = f.flush(2.0)
    assert out.messages == ["Z" * 10]
    assert out.marks == ["truncated:5"]
    assert out.end == 15


def test_multiline_groups_continuation_lines_until_the_next_start() -> None:
    f = framer(multiline=re.compile(r"^\d{4}-"), max_line=1000)
    out = f.feed(b"2026-01-01 boom\n  at a()\n  at b()\n2026-01-01 next\n", 0.0)
    assert out.messages == ["2026-01-01 boom\n  at a()\n  at b()"]
    assert out.starts == [0]
    assert out.end == 34  # the open record starts here: not yet covered
    out = f.flush(4.0)
    assert out.messages == []
    out = f.flush(5.0)
    assert out.messages == ["2026-01-01 next"]
    assert out.end == 50


def test_multiline_record_over_the_limit_ships_marked_and_continues() -> None:
    f = framer(multiline=re.compile(r"^START"), max_line=20)
    out = f.feed(b"START 1\ncontinued 1\ncontinued 2\nSTART 2\n", 0.0)
    assert out.messages == ["START 1\ncontinued 1", "continued 2"]
    assert out.marks == [PARTIAL, ""]


def test_a_flushed_partial_line_joins_its_multiline_record() -> None:
    f = framer(multiline=re.compile(r"^START"), max_line=1000, flush_timeout=1.0)
    f.feed(b"START\n  more", 0.0)
    out = f.flush(1.0)
    assert out.messages == ["START\n  more"]


def test_utf8_cut_never_splits_a_character() -> None:
    data = "aé€😀".encode()
    for limit in range(1, len(data)):
        cut = utf8_cut(data, limit)
        data[:cut].decode()
        assert 0 < cut <= limit


def replay(f: Framer, data: bytes, pieces: list[int]) -> Frames:
    total = Frames(starts=[])
    position, now = 0, 0.0
    for size in pieces:
        out = f.feed(data[position : position + size], now)
        position += size
        now += 0.1
        total.messages += out.messages
        assert out.starts is not None
        assert total.starts is not None
        total.starts += out.starts
        total.end = out.end
    if position < len(data):
        out = f.feed(data[position:], now)
        total.messages += out.messages
        assert out.starts is not None
        assert total.starts is not None
        total.starts += out.starts
    out = f.flush(now, force=True)
    total.messages += out.messages
    assert out.starts is not None
    assert total.starts is not None
    total.starts += out.starts
    total.end = out.end
    return total


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="abcé€ \t", max_size=40), max_size=30),
    seed=st.integers(0, 2**32),
)
def test_any_chunking_gives_the_same_records_and_every_byte_is_covered(
    lines: list[str], seed: int
) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    rng = random.Random(seed)
    pieces = [rng.randint(1, 50) for _ in range(len(data) // 5 + 1)]
    out = replay(framer(max_line=1000), data, pieces)
    assert out.messages == lines
    expected, offset = [], 0
    for line in lines:
        expected.append(offset)
        offset += len(line.encode()) + 1
    assert out.starts == expected
    assert out.end == len(data)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab€", min_size=0, max_size=60), max_size=20),
    seed=st.integers(0, 2**32),
)
def test_split_parts_rejoin_to_the_lines(lines: list[str], seed: int) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    rng = random.Random(seed)
    pieces = [rng.randint(1, 30) for _ in range(len(data) // 5 + 1)]
    f = framer(max_line=16)
    total: list[tuple[str, str]] = []
    position, now = 0, 0.0
    for size in [*pieces, len(data)]:
        out = f.feed(data[position : position + size], now)
        position += size
        total += list(zip(out.messages, out.marks or [""] * len(out.messages), strict=True))
    rejoined, current = [], ""
    for text, mark in total:
        assert len(text.encode()) <= 16
        current += text
        if mark != PARTIAL:
            rejoined.append(current)
            current = ""
    assert rejoined == lines
