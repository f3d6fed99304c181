"""Where a review's time goes: ``python -m bench.profiling [--server | --gc] [--seconds N]``.

Without options: each stage of ``/mutate`` in-process on the bench's reviews
(``bench.pods``), best of 5 ``timeit`` runs, no profiler overhead:
``json.loads``, ``parse_review``, ``render`` (and render with the parsed
annotations' memo cleared: the first pod of a Deployment), ``make_patch``,
``to_json``, and the whole handler. ``--server``: ``sidecar-injector serve`` runs under
pyinstrument (sampling; ``pip install pyinstrument``) or, without it, cProfile,
while ``hey -c 16`` posts case (a) for ``--seconds``; the profile is printed.
``--gc``: the server's garbage collections (``gc.callbacks``: count and pause
per generation) while case (a) comes at a steady 200/s, with the p50/p99 of
that run: full (generation 2) collections are what the p99 meets.
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from bench import pods, rates, tools
from bench.processes import free_port, http_status, wait_until

# Runs in the server process: the CLI under a profiler, the report written on exit.
WRAPPER = """
import sys
mode, out, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
from injector.cli.main import main
if mode == "pyinstrument":
    from pyinstrument import Profiler
    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        main(argv)
    except SystemExit:
        pass
    finally:
        profiler.stop()
        with open(out, "w") as f:
            f.write(profiler.output_text(unicode=False, color=False))
elif mode == "gc":
    import gc, time
    pauses, started = [], [0.0]
    def watch(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))
    gc.callbacks.append(watch)
    try:
        main(argv)
    except SystemExit:
        pass
    finally:
        with open(out, "w") as f:
            f.write("\\n".join(f"{g} {s:.6f}" for g, s in pauses))
else:
    import cProfile, pstats
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        main(argv)
    except SystemExit:
        pass
    finally:
        profiler.disable()
        with open(out, "w") as f:
            stats = pstats.Stats(profiler, stream=f)
            stats.sort_stats("cumulative").print_stats("injector|json|jsonpatch", 40)
"""


def stages() -> list[tuple[str, str, float]]:
    """(case, stage, microseconds per call) for every stage of the handler."""
    from injector.admission.review import admit, parse_review  # noqa: PLC0415
    from injector.cli.config_file import load  # noqa: PLC0415
    from injector.core.model import NamespaceInfo, _memo  # noqa: PLC0415
    from injector.core.patch import make_patch  # noqa: PLC0415
    from injector.core.render import render  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "injector.yaml"
        config.write_text(yaml.safe_dump(pods.SERVE_CONFIG))
        settings = load(config)
    namespace = NamespaceInfo(pods.NAMESPACE)
    rows: list[tuple[str, str, float]] = []

    def time_it(case: str, stage: str, fn: Callable[[], Any], number: int = 1000) -> None:
        best = min(timeit.repeat(fn, number=number, repeat=5)) / number
        rows.append((case, stage, best * 1e6))

    for case, annotated in (("a", True), ("b", False)):
        body = pods.review_bytes(annotated)
        review = parse_review(body)
        assert review.pod is not None
        pod = review.pod
        outcome = admit(review, settings, namespace)
        time_it(case, "json.loads", partial(json.loads, body))
        time_it(case, "parse_review (json.loads + checks)", partial(parse_review, body))
        if annotated:
            rendered = render(pod, namespace, settings).pod
            time_it(case, "render", partial(render, pod, namespace, settings))

            def first_seen(pod: Any = pod) -> Any:  # the first pod of a Deployment
                _memo.cache_clear()
                return render(pod, namespace, settings)

            time_it(case, "render, annotations not seen before", first_seen)
            time_it(case, "make_patch", partial(make_patch, pod, rendered))
        time_it(case, "admit (render + make_patch)", partial(admit, review, settings, namespace))
        time_it(case, "Outcome.to_json", outcome.to_json)

        def whole(body: bytes = body) -> bytes:
            return admit(parse_review(body), settings, namespace).to_json()

        time_it(case, "whole handler: parse + admit + to_json", whole)
    return rows


def profile_server(seconds: float, gc_only: bool = False) -> str:
    """The server's profile while ``hey -c 16`` posts case (a) for ``seconds``
    (``gc_only``: its garbage collections while (a) comes at 200/s)."""
    hey = tools.ensure(["hey"])["hey"]
    if gc_only:
        mode = "gc"
    else:
        try:
            import pyinstrument  # noqa: F401, PLC0415

            mode = "pyinstrument"
        except ImportError:
            mode = "cprofile"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "injector.yaml").write_text(yaml.safe_dump(pods.SERVE_CONFIG))
        body = root / "a.json"
        body.write_bytes(pods.review_bytes(True))
        ca, out, port = root / "ca.crt", root / "profile.txt", free_port()
        proc = subprocess.Popen(
            [
                *(sys.executable, "-c", WRAPPER, mode, str(out)),
                *("serve", f"--listen=127.0.0.1:{port}", f"--config={root / 'injector.yaml'}"),
                *(f"--ca-out={ca}", "--log-level=warning"),
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: ca.exists() and ca.stat().st_size > 0, 30, "the server's CA")
            context = ssl.create_default_context(cafile=str(ca))
            url = f"https://127.0.0.1:{port}"
            wait_until(
                lambda: http_status(url + "/healthz", context=context) == 200, 30, "/healthz"
            )
            steady: tools.LoadResult | None = None
            if gc_only:
                steady = rates.steady(
                    hey,
                    url + "/mutate",
                    rate=200,
                    seconds=seconds,
                    streams=8,
                    method="POST",
                    body_file=str(body),
                    content_type="application/json",
                )
            result = tools.hey(
                hey,
                url + "/mutate",
                seconds=seconds,
                concurrency=16,
                method="POST",
                body_file=str(body),
                content_type="application/json",
            )
        finally:
            proc.send_signal(signal.SIGTERM)  # the profile is written on the way out
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if steady is not None:
            return _gc_summary(out.read_text(), steady)
        head = f"{mode}: {result.ok} reviews in {result.seconds:.1f} s under the profiler\n"
        return head + out.read_text()


def _gc_summary(text: str, steady: tools.LoadResult) -> str:
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for line in text.splitlines():
        gen, seconds = line.split()
        pauses[int(gen)].append(float(seconds) * 1000)
    lines = [
        f"(a) at 200/s: p50 {steady.p50_ms} ms, p99 {steady.p99_ms} ms; then 16 concurrent",
        "collections during start-up and both runs, per generation:",
    ]
    for generation, values in pauses.items():
        if values:
            lines.append(
                f"  gen {generation}: {len(values)} collections, pause median "
                f"{sorted(values)[len(values) // 2]:.2f} ms, max {max(values):.2f} ms"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiling", description=__doc__)
    parser.add_argument("--server", action="store_true", help="profile the running server")
    parser.add_argument("--gc", action="store_true", help="the server's GC pauses under load")
    parser.add_argument("--seconds", type=float, default=5.0, help="load time with --server [5]")
    args = parser.parse_args(argv)
    if args.server or args.gc:
        print(profile_server(args.seconds, gc_only=args.gc))
        return 0
    rows = stages()
    for case, stage, micros in rows:
        print(f"({case}) {stage:42s} {micros:8.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
