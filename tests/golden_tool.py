"""Golden files of the injection: ``tests/golden/<case>.yaml`` -> ``<case>.injected.yaml``.

``python -m tests.golden_tool regenerate`` (``make golden``) rewrites every
``.injected.yaml``; ``check`` exits 1 listing stale ones (the test suite does
the same per case). Review regenerated files as a diff.

A case file is one YAML mapping:

* ``description``: what the case shows;
* ``object``: a Pod, or a workload whose pod template is injected (as
  ``sidecar-injector inject`` does);
* ``namespace`` (optional): ``{name, labels}``; default ``{name: default}``;
* ``settings`` (optional): a ``--config`` document merged over ``BASE_SETTINGS``.

The output records the outcome (``injected``, ``skipped: REASON``,
``denied``), the admission warnings (sent with denials too), the denial
message and the injected object.

Every case runs through both shells, never ``render`` alone: the CLI's own
code (``injector.cli.offline.evaluate``, what ``sidecar-injector inject``
runs) and the webhook's (``admit`` on an AdmissionReview of the same pod,
its JSON Patch applied). They must agree on the outcome, the warnings, the
message and the pod, else the case fails (``Disagreement``). An output
without its case (``orphans``) fails too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from injector.admission.review import admit, parse_review
from injector.cli.offline import Options, Outcome, dump_yaml, evaluate
from injector.core.model import NamespaceInfo
from injector.core.pods import PodSite, find_pods, with_pod
from injector.core.settings import Settings
from injector.core.specs import settings_from_spec
from tests.injector.reviews import patched, review

GOLDEN_DIR = Path(__file__).parent / "golden"
BASE_SETTINGS: dict[str, Any] = {
    "clusterVersion": "1.30",
    "injectorNamespace": "sidecar-injector",
    "profiles": {
        "default": {
            "image": "registry.example.io/sidecar:0.1.0",
            "vault": {"address": "https://vault.vault.svc:8200", "role": "app"},
        }
    },
}


def cases() -> list[Path]:
    return sorted(p for p in GOLDEN_DIR.glob("*.yaml") if not p.name.endswith(".injected.yaml"))


def output_path(case: Path) -> Path:
    return case.with_name(case.name[: -len(".yaml")] + ".injected.yaml")


def load_case(case: Path) -> dict[str, Any]:
    data = yaml.safe_load(case.read_text())
    if not isinstance(data, dict) or "object" not in data:
        raise ValueError(f"{case}: a case is a mapping with at least 'object'")
    return data


def case_settings(data: dict[str, Any]) -> Settings:
    spec = {**BASE_SETTINGS, **(data.get("settings") or {})}
    return settings_from_spec(spec)


def case_namespace(data: dict[str, Any]) -> NamespaceInfo:
    ns = data.get("namespace") or {}
    return NamespaceInfo(ns.get("name", "default"), ns.get("labels") or {})


def find_pod(data: dict[str, Any]) -> PodSite | None:
    """The pod (template) of a case's object, as ``inject`` finds it."""
    found = find_pods(data["object"], "the case", case_namespace(data).name)
    return found.sites[0] if found.sites else None


class Disagreement(AssertionError):
    """The CLI and the webhook answered one golden case differently."""


def _cli(data: dict[str, Any]) -> tuple[PodSite | None, Outcome | None]:
    """The case through ``sidecar-injector inject``'s own code."""
    ns = case_namespace(data)
    options = Options(namespace=ns.name, namespace_labels=dict(ns.labels))
    for _, _, outcomes in evaluate([data["object"]], options, case_settings(data)):
        for outcome in outcomes:
            return outcome.site, outcome
    return None, None


def _webhook(site: PodSite, data: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The case's pod through ``admit`` (the webhook's code): the answer and the
    pod with the answer's patch applied."""
    namespace = case_namespace(data)
    body = json.dumps(review(site.pod, namespace=namespace.name)).encode()
    outcome = admit(parse_review(body), case_settings(data), namespace)
    answer = json.loads(outcome.to_json())["response"]
    return answer, patched(site.pod, answer)


def run_case(data: dict[str, Any]) -> dict[str, Any]:
    """The outcome of a case, as written to ``.injected.yaml``: the CLI's, checked
    against the webhook's."""
    obj = data["object"]
    site, cli = _cli(data)
    if site is None or cli is None:
        return {"outcome": "passed through", "object": obj}
    answer, webhook_pod = _webhook(site, data)
    result = cli.result
    if result is None:
        out: dict[str, Any] = {"outcome": "denied", "message": cli.error}
        if cli.warnings:
            out["warnings"] = list(cli.warnings)
        _agree(out, answer, site.pod, webhook_pod)
        return out
    out = {"outcome": "injected" if result.injected else f"skipped: {result.skip.reason}"}  # type: ignore[union-attr]
    if result.warnings:
        out["warnings"] = list(result.warnings)
    _agree(out, answer, result.pod if result.injected else site.pod, webhook_pod)
    out["object"] = with_pod(obj, site, result.pod) if result.injected else obj
    return out


def _agree(cli: dict[str, Any], answer: dict[str, Any], cli_pod: Any, webhook_pod: Any) -> None:
    said = {
        "allowed": answer["allowed"],
        "warnings": answer.get("warnings", []),
        "message": answer.get("status", {}).get("message"),
    }
    wanted = {
        "allowed": cli["outcome"] != "denied",
        "warnings": cli.get("warnings", []),
        "message": cli.get("message"),
    }
    if said != wanted or webhook_pod != cli_pod:
        differs = [k for k in said if said[k] != wanted[k]] + (
            ["pod"] if webhook_pod != cli_pod else []
        )
        raise Disagreement(f"the webhook and inject differ in {', '.join(differs)}: {said}")


def orphans() -> list[Path]:
    """Outputs whose case is gone (renamed or deleted)."""
    known = {output_path(c) for c in cases()}
    return sorted(p for p in GOLDEN_DIR.glob("*.injected.yaml") if p not in known)


def render_output(data: dict[str, Any]) -> str:
    header = f"# Generated by `make golden` from {data.get('_name', 'the case')}; do not edit.\n"
    return header + str(dump_yaml([run_case(data)]))


def _case_text(case: Path) -> str:
    data = load_case(case)
    data["_name"] = case.name
    return render_output(data)


def regenerate() -> int:
    for orphan in orphans():
        orphan.unlink()
        print(f"removed {orphan.name}: its case is gone")
    for case in cases():
        output_path(case).write_text(_case_text(case))
    print(f"regenerated {len(cases())} golden files in {GOLDEN_DIR}")
    return 0


def check() -> int:
    stale = [
        c.name
        for c in cases()
        if not output_path(c).exists() or output_path(c).read_text() != _case_text(c)
    ] + [f"{p.name} (orphaned)" for p in orphans()]
    if stale:
        print("stale golden files (run `make golden` and review the diff): " + ", ".join(stale))
        return 1
    print(f"{len(cases())} golden files up to date")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["regenerate"]:
        return regenerate()
    if argv == ["check"]:
        return check()
    print("usage: python -m tests.golden_tool regenerate|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
