"""What a bench run found, and how it is shown.

A ``Measure`` is one figure with its baseline (measured in the same run), the
ratio or difference against that baseline, and the goal from issue 7 with
met/missed. ``Report`` collects them with the machine they ran on and renders
a plain-text table (stdout), JSON (``bench/results/latest.json``) and a
Markdown table for the README (``bench/results/latest.md``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Compare = Literal["ratio", "delta", "none"]


@dataclass(frozen=True)
class Goal:
    """A target from the issue: ``kind`` says what is compared with ``limit``.

    ``ratio_min``: value / baseline >= limit; ``max``: value <= limit;
    ``min``: value >= limit; ``delta_max``: value - baseline <= limit.
    """

    text: str
    kind: Literal["ratio_min", "max", "min", "delta_max"]
    limit: float

    def met(self, value: float, baseline: float | None) -> bool | None:
        if self.kind == "max":
            return value <= self.limit
        if self.kind == "min":
            return value >= self.limit
        if baseline is None or (self.kind == "ratio_min" and baseline <= 0):
            return None
        if self.kind == "ratio_min":
            return value / baseline >= self.limit
        return value - baseline <= self.limit


@dataclass(frozen=True)
class Measure:
    section: str  # webhook, proxy, agents
    key: str  # stable id, e.g. "webhook.a.rps_c16"
    label: str  # what a reader sees
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str | None = None
    compare: Compare = "ratio"
    goal: Goal | None = None
    note: str = ""
    baseline_unit: str | None = None  # when it differs (e.g. req/s for reviews/s)
    void: str = ""  # why the goal cannot be judged from this run (then met is None)

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def delta(self) -> float | None:
        if self.value is None or self.baseline is None:
            return None
        return self.value - self.baseline

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.value is None or self.void:
            return None
        return self.goal.met(self.value, self.baseline)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["goal"] = self.goal.text if self.goal else None
        data["goal_met"] = self.met
        data["ratio"] = _round(self.ratio, 4)
        data["delta"] = _round(self.delta, 4)
        return data


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("req/s", "reviews/s", "lines/s"):
        text = f"{value:,.0f}"
    elif unit == "ms":
        text = f"{value:.2f}" if value < 10 else f"{value:.1f}"
    elif unit == "s":
        text = f"{value:.3f}"
    elif unit == "us":
        text = f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    elif unit == "MiB":
        text = f"{value:.1f}"
    else:
        text = f"{value:g}"
    return f"{text} {unit}"


def versus(m: Measure) -> str:
    if m.compare == "ratio" and m.ratio is not None:
        return f"{m.ratio:.0%}" if m.ratio < 2 else f"{m.ratio:.1f}x"
    if m.compare == "delta" and m.delta is not None:
        return ("+" if m.delta >= 0 else "") + fmt(m.delta, m.unit)
    return ""


def status(m: Measure) -> str:
    if m.goal is not None and m.void:
        return "not judged"
    met = m.met
    if met is None:
        return "" if m.goal is None else "n/a"
    return "met" if met else "MISSED"


def baseline_text(m: Measure) -> str:
    if m.baseline_label is None or m.baseline is None:
        return ""
    return f"{m.baseline_label}: {fmt(m.baseline, m.baseline_unit or m.unit)}"


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


@dataclass
class Report:
    machine: dict[str, Any] = field(default_factory=machine_info)
    options: dict[str, Any] = field(default_factory=dict)
    measures: list[Measure] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)  # section -> 1-min load average
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  # section -> why it did not run

    def add(self, *measures: Measure) -> None:
        self.measures.extend(measures)

    # -- rendering ----------------------------------------------------------

    def rows(self) -> list[list[str]]:
        return [
            [m.label, fmt(m.value, m.unit), baseline_text(m), versus(m), _goal(m), status(m)]
            for m in self.measures
        ]

    HEADER = ("measure", "result", "baseline (same run)", "vs baseline", "goal", "")

    def text(self) -> str:
        rows = [list(self.HEADER), *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER))]
        lines = []
        section = None
        for index, row in enumerate(rows):
            if index > 0:
                m = self.measures[index - 1]
                if m.section != section:
                    section = m.section
                    lines.append(f"-- {section} (load average {self.load.get(section, -1):.1f})")
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.extend(self._notes(lambda key, text: f"note [{key}]: {text}"))
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        m = self.machine
        out = [
            "# `make bench`: latest results",
            "",
            f"Machine: {m['nproc']} cores, {m['cpu']}, Linux {m['kernel']}, Python "
            f"{m['python']}; run {m['date']} ({self.seconds:.0f} s"
            f"{', --quick' if self.options.get('quick') else ''}). Load averages at the "
            "start of each section: "
            + ", ".join(f"{k} {v:.1f}" for k, v in self.load.items())
            + ".",
            "",
            "| part | " + " | ".join(self.HEADER[:-1]) + " | status |",
            "|" + "---|" * (len(self.HEADER) + 1),
        ]
        out.extend(
            "| " + " | ".join(c.replace("|", "/") for c in [m.section, *r]) + " |"
            for m, r in zip(self.measures, self.rows(), strict=True)
        )
        notes = self._notes(lambda key, text: f"- `{key}`: {text}")
        if notes:
            out += ["", "Notes:", "", *notes]
        return "\n".join(out) + "\n"

    def _notes(self, line: Callable[[str, str], str]) -> list[str]:
        notes = [line(m.key, m.note) for m in self.measures if m.note]
        notes += [line(section, f"not measured: {why}") for section, why in self.failures.items()]
        return notes

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "options": self.options,
            "seconds": round(self.seconds, 1),
            "load_average": self.load,
            "failures": self.failures,
            "measures": [m.to_json() for m in self.measures],
            "raw": self.raw,
        }

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / "latest.json"
        md_path = directory / "latest.md"
        for path, text in (
            (json_path, json.dumps(self.to_json(), indent=2) + "\n"),
            (md_path, self.markdown()),
        ):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        return json_path, md_path


def _goal(m: Measure) -> str:
    return m.goal.text if m.goal else ""
