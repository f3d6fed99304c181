"""The reference docs, generated from the rows: the README's annotation
table (``sidecar-injector annotations --markdown``), its plain-text form,
and the variable tables of docs/runtime.md. Pure string builders; a test
fails when README.md or docs/runtime.md differs from them (``make docs``).
"""

from __future__ import annotations

from typing import Any

from contract.catalogue import ANNOTATIONS, PARTS, ROLE_NAMES
from contract.knobs import Knob
from contract.layout import NAMESPACE_LABEL, PREFIX

NAMESPACE_NOTE = (
    f"Namespace label `{NAMESPACE_LABEL}`: `enabled` makes `inject` default to "
    '"true" in that namespace, `disabled` to "false"; the pod annotation wins.'
)


def _row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _meaning(knob: Knob[Any]) -> str:
    """The row's help; the first ``<role>`` row also says which roles there are."""
    first = next(k for k in ANNOTATIONS if "<role>" in (k.annotation or ""))
    if knob is first:
        return f"{knob.help} (<role>: {', '.join(ROLE_NAMES)})"
    return knob.help


def annotation_table() -> str:
    """The README's table of annotations, between its markers."""
    lines = [
        f"| annotation (prefix `{PREFIX}`) | meaning | accepted values | default |",
        "|---|---|---|---|",
    ]
    for knob in ANNOTATIONS:
        default = knob.annotation_default or "-"
        lines.append(_row((f"`{knob.annotation}`", _meaning(knob), knob.describes, default)))
    return "\n".join([*lines, "", NAMESPACE_NOTE]) + "\n"


def annotation_text() -> str:
    """The same reference as plain text (``sidecar-injector annotations``)."""
    lines = []
    for knob in ANNOTATIONS:
        default = knob.annotation_default
        lines += [PREFIX + (knob.annotation or ""), f"    {_meaning(knob)}"]
        lines += [f"    accepted: {knob.describes}"]
        lines += [f"    default: {default}" if default else "    set by the injector", ""]
    return "\n".join([*lines, NAMESPACE_NOTE.replace("`", "")]) + "\n"


def _shared() -> list[Knob[Any]]:
    """Variables more than one role reads (listed once, under "common")."""
    counts: dict[str, int] = {}
    for role in PARTS:
        for knob in role.knobs:
            if knob.env:
                counts[knob.env] = counts.get(knob.env, 0) + 1
    seen: dict[str, Knob[Any]] = {}
    for role in PARTS:
        for knob in role.knobs:
            if knob.env and counts[knob.env] > 1:
                seen.setdefault(knob.env, knob)
    return list(seen.values())


def _default(env: str) -> str:
    defaults = {
        role.name: k.documented_default for role in PARTS for k in role.knobs if k.env == env
    }
    if len(set(defaults.values())) == 1:
        return next(iter(defaults.values()))
    return ", ".join(f"{name} `{value}`" for name, value in defaults.items())


def runtime_table(role_name: str | None) -> str:
    """docs/runtime.md's table of one role's variables (``None``: the common ones)."""
    shared = {k.env for k in _shared()}
    if role_name is None:
        knobs = _shared()
    else:
        role = next(r for r in PARTS if r.name == role_name)
        knobs = [k for k in role.knobs if k.env and k.env not in shared]
    lines = ["| variable | flag | meaning | default |", "|---|---|---|---|"]
    for knob in knobs:
        default = _default(knob.env or "") if role_name is None else knob.documented_default
        cells = (f"`{knob.env}`", f"`{knob.flag}`", knob.help, _code(default))
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    if not text or " " in text or "`" in text or text in ("none", "required"):
        return text or "none"
    return f"`{text}`"


def sections() -> dict[str, str]:
    """Marker name -> generated text, for README.md and docs/runtime.md."""
    result = {"annotations": annotation_table(), "runtime:common": runtime_table(None)}
    for role in PARTS:
        result[f"runtime:{role.name}"] = runtime_table(role.name)
    return result
