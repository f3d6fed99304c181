"""An app that writes numbered log lines, rotates and truncates its log.

``python -m tests.logs.writer DIR --lines N --rate R --rotate-every K --seed S``
appends ``line NNNNNNNN ...`` to ``DIR/app.log`` with ``O_APPEND`` (as
logging libraries do), R lines a second in small bursts, some lines written
in two parts (a partial line, then its end), and every K lines rotates:
alternately rename and create (``app.log`` -> ``app.log.N``, never reused)
and copytruncate (copy to ``app.log.N``, then truncate ``app.log``; done by
the app between two writes, so no line falls between copy and truncation).
Prints ``done N`` when finished. Run by the chaos test and, as another user,
by the kubelet test.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=5_000)
    parser.add_argument("--rotate-every", type=int, default=2_000)
    parser.add_argument("--size", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    log = args.directory / "app.log"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    started = time.monotonic()
    rotations = 0
    number = 0
    while number < args.lines:
        burst = min(args.lines - number, rng.randint(1, 200))
        lines = []
        for n in range(number, number + burst):
            text = f"line {n:08d} "
            lines.append((text + "x" * max(0, args.size - len(text)) + "\n").encode())
        data = b"".join(lines)
        if rng.random() < 0.2:  # a line cut in two writes
            cut = rng.randint(1, len(data) - 1)
            os.write(fd, data[:cut])
            time.sleep(rng.uniform(0, 0.01))
            os.write(fd, data[cut:])
        else:
            os.write(fd, data)
        before = number
        number += burst
        if before // args.rotate_every != number // args.rotate_every:
            rotations += 1
            target = args.directory / f"app.log.{rotations}"
            if rotations % 2:
                os.rename(log, target)
                os.close(fd)
                fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            else:
                shutil.copyfile(log, target)
                os.truncate(log, 0)
        ahead = number / args.rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    os.close(fd)
    print(f"done {number} rotations {rotations}", flush=True)


if __name__ == "__main__":
    main()
