"""The bench's one exception: a run cannot go on (tool missing, server down)."""

from __future__ import annotations


class BenchError(Exception):
    """A bench run cannot go on; the message names what and how to fix it."""
