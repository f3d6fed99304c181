"""JSON lines on stderr: one object per event, never a secret value."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    def __init__(self, role: str, level: str = "info", stream: TextIO | None = None) -> None:
        self.role = role
        self.threshold = _LEVELS.get(level.lower(), 20)
        self.stream = stream or sys.stderr

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if _LEVELS[level] < self.threshold:
            return
        record = {"time": round(time.time(), 3), "level": level, "role": self.role, "msg": event}
        record.update(fields)
        self.stream.write(json.dumps(record, default=str) + "\n")
        self.stream.flush()

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)
