"""Flags with ``SIDECAR_*`` environment fallbacks, read once at a role's entry.

``flag(parser, "--drain-timeout", "SIDECAR_DRAIN_TIMEOUT", default="30s")``
registers a flag whose default comes from the environment. Parsing of values
(durations, ports, ...) happens in the role's settings builder with
``contract.units``, so a bad value names both the flag and the variable.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

from sidecar.errors import UsageError

T = TypeVar("T")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting with a traceback-free 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def flag(
    parser: argparse.ArgumentParser,
    name: str,
    env: str,
    *,
    default: str | None = None,
    help_text: str = "",
    environ: Mapping[str, str] | None = None,
) -> None:
    source = os.environ if environ is None else environ
    parser.add_argument(
        name,
        default=source.get(env, default),
        metavar=env,
        help=f"{help_text} [env {env}" + (f", default {default}]" if default else "]"),
    )


def convert(value: str, parse: Callable[[str], T], name: str, env: str) -> T:
    """Parse one option value; a ValueError becomes a UsageError naming the option."""
    try:
        return parse(value)
    except ValueError as exc:
        raise UsageError(f"{name} / {env}: {exc}") from None


def required(value: str | None, name: str, env: str, what: str) -> str:
    if value is None or not value.strip():
        raise UsageError(f"{name} / {env} is required: {what}")
    return value
