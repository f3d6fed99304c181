"""``python -m bench [--only webhook|proxy|capture|mesh|agents|logs] [--quick] [--out DIR]``.

Runs the sections in order (each bounded in time, loopback only), prints the
table, and writes ``DIR/latest.json`` and ``DIR/latest.md`` (default
``bench/results``). A section that cannot run (a tool missing, a server that
does not start) is reported as not measured, with why, and the others still
run; the exit code is then 1. Goals that are missed do not change the exit
code: they are targets, not assertions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import agents, capture, logs, mesh, proxy, tools, webhook
from bench.errors import BenchError
from bench.processes import load_average
from bench.report import Measure, Report

SECTIONS = ("webhook", "proxy", "capture", "mesh", "agents", "logs")
RESULTS = Path(__file__).resolve().parent / "results"
Section = Callable[[Path, bool, dict[str, str]], tuple[list[Measure], dict[str, Any]]]


def _agents(
    workdir: Path, quick: bool, paths: dict[str, str]
) -> tuple[list[Measure], dict[str, Any]]:
    return agents.run(workdir, quick)


RUNNERS: dict[str, Section] = {
    "webhook": webhook.run,
    "proxy": proxy.run,
    "capture": capture.run,
    "mesh": mesh.run,
    "agents": _agents,
    "logs": lambda workdir, quick, paths: logs.run(workdir, quick),
}
NEEDS: dict[str, list[str]] = {
    "webhook": ["hey"],
    "proxy": ["hey", "wrk", "nginx"],
    "capture": ["wrk", "nginx"],
    "mesh": ["wrk", "nginx"],
    "agents": [],
    "logs": [],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks: webhook, proxy and agents against baselines in the same run.",
    )
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this section (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs, one round (~1 min)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help=f"where latest.json/.md go [{RESULTS}]"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = [s for s in SECTIONS if s in (args.only or SECTIONS)]
    report = Report(options={"quick": args.quick, "sections": sections})
    started = time.monotonic()
    try:
        paths = tools.ensure(sorted({t for s in sections for t in NEEDS[s]}))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for section in sections:
            report.load[section] = load_average()
            print(f"bench: {section} ...", flush=True)
            section_started = time.monotonic()
            try:
                measures, raw = RUNNERS[section](Path(tmp) / section, args.quick, paths)
            except BenchError as exc:
                report.failures[section] = str(exc).splitlines()[0]
                print(f"bench: {section} not measured: {exc}", file=sys.stderr, flush=True)
                continue
            report.add(*measures)
            report.raw[section] = raw
            print(
                f"bench: {section} done in {time.monotonic() - section_started:.0f} s", flush=True
            )
    report.seconds = time.monotonic() - started
    print()
    print(report.text(), end="")
    json_path, md_path = report.write(args.out)
    print(f"\nbench: wrote {json_path} and {md_path} ({report.seconds:.0f} s)")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
