"""Process lifecycle: a stop event set by SIGTERM/SIGINT, shared by every role."""

from __future__ import annotations

import signal
import threading


def stop_event() -> threading.Event:
    """An event set on SIGTERM or SIGINT. Call from the main thread only."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
