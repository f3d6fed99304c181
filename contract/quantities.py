"""Kubernetes resource quantities: ``500m`` CPU, ``128Mi`` memory.

Pure parsers used to check resource defaults, per-pod overrides and operator
bounds. Values are compared as exact ``Fraction``s of cores or bytes; what is
rendered is the text the user or operator wrote, normalised by stripping.
"""

from __future__ import annotations

import re
from fractions import Fraction

_QUANTITY = re.compile(r"^([+]?[0-9]+(?:\.[0-9]*)?|[+]?\.[0-9]+)([a-zA-Z]*)$")
_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
}
CPU_HELP = "a CPU quantity such as 100m, 500m, 1 or 1.5"
MEMORY_HELP = "a memory quantity such as 64Mi, 256Mi or 1Gi"


def parse_quantity(text: str, accepted: str) -> Fraction:
    value = text.strip()
    match = _QUANTITY.match(value)
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"{text!r} is not {accepted}")
    number = Fraction(match.group(1))
    if number <= 0:
        raise ValueError(f"{text!r} is not {accepted} (it must be more than 0)")
    return number * _SUFFIXES[match.group(2)]


def parse_cpu(text: str) -> Fraction:
    """``"500m"`` -> ``Fraction(1, 2)`` cores."""
    return parse_quantity(text, CPU_HELP)


def parse_memory(text: str) -> Fraction:
    """``"64Mi"`` -> ``67108864`` bytes. ``m`` (milli-bytes) is refused."""
    if text.strip().endswith("m"):
        raise ValueError(f"{text!r} is not {MEMORY_HELP} (m means milli-bytes; use Mi)")
    return parse_quantity(text, MEMORY_HELP)
