"""Jittered, capped exponential back-off and deadlines."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """``next()`` gives the delay before the next try: initial * factor**n, capped,
    with +-``jitter`` proportional randomisation so replicas do not retry in step."""

    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    _attempt: int = field(default=0, init=False)

    def next(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self._attempt)
        self._attempt += 1
        spread = base * self.jitter
        return max(0.0, min(self.maximum, base + random.uniform(-spread, spread)))  # noqa: S311

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt


@dataclass(frozen=True)
class Deadline:
    """A point in monotonic time; ``remaining()`` never goes below zero."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at
