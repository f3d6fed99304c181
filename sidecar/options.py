"""A role's flags with ``SIDECAR_*`` environment fallbacks, read once at its
entry, from the role's rows in ``contract`` (``add_knobs`` / ``read_knobs``).

Each row becomes a flag whose default comes from its variable, else from the
row's default; each value is parsed by the row's own parser (the one the
injector validates annotations with), so a bad value is a ``UsageError``
naming the flag, the variable and what is accepted.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from contract.knobs import Knob, Role, Values
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


def add_knobs(parser: argparse.ArgumentParser, role: Role, environ: Mapping[str, str]) -> None:
    """A flag for every row of ``role`` that the agent reads."""
    for knob in role.knobs:
        if knob.flag and knob.env:
            flag(
                parser,
                knob.flag,
                knob.env,
                default=knob.default,
                help_text=knob.help.replace("%", "%%"),
                environ=environ,
            )


def role_parser(role: Role, environ: Mapping[str, str], description: str) -> ArgumentParser:
    parser = ArgumentParser(prog=f"sidecar {role.name}", description=description)
    if role.init:
        parser.add_argument("--init", action="store_true", help="do the work once, then exit")
    add_knobs(parser, role, environ)
    return parser


def read_knobs(args: argparse.Namespace, knobs: Sequence[Knob[Any]]) -> Values:
    """Every row's value from ``args``, parsed. An unset or empty flag and
    variable mean the row's default; rows without one are left out."""
    found: dict[Knob[Any], object] = {}
    for knob in knobs:
        if not (knob.flag and knob.env):
            continue
        raw = getattr(args, knob.flag[2:].replace("-", "_"))
        if raw is None or not str(raw).strip():
            raw = knob.default
        if raw is not None:
            found[knob] = convert(raw, knob.parse, knob.flag, knob.env)
    return Values(found)


def need(values: Values, knob: Knob[T], what: str) -> T:
    """A required row's value, or a ``UsageError`` saying what to set."""
    value = values.get(knob)
    if value is None:
        raise UsageError(f"{knob.flag} / {knob.env} is required: {what}")
    return value


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
