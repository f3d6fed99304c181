"""Process lifecycle: a stop event set by SIGTERM/SIGINT, shared by every role."""

from __future__ import annotations

import signal
import threading
import time

# The longest a wait() blocks without returning to the interpreter.
_SLICE = 0.2


class StopEvent(threading.Event):
    """A ``threading.Event`` whose ``wait()`` wakes at least every 0.2 s.

    The kernel may deliver SIGTERM to any thread of the process. Python runs
    the handler in the main thread, but only once that thread executes
    bytecode again: a main thread blocked in a plain ``Event.wait()`` (a
    semaphore wait that the signal did not interrupt, because another thread
    took it) would sleep through the signal. Waiting in slices bounds that.
    """

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = _SLICE if deadline is None else deadline - time.monotonic()
            if super().wait(max(0.0, min(_SLICE, remaining))):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False


def stop_event() -> StopEvent:
    """An event set on SIGTERM or SIGINT. Call from the main thread only."""
    stop = StopEvent()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
