"""``sidecar-injector inject | explain``: the webhook's injection on YAML manifests.

Pods are found by ``injector.pods`` (the webhook's own notion of a pod, so the
two cannot disagree) and injected by ``render``. On stderr: a warning for every
object holding a pod we do not handle, every document that is not an object,
every injection warning, and a note for every pod that asks for injection but
is skipped (hostNetwork, a system namespace, ...). A denial or a malformed pod
is an error naming the object: exit 1, no manifests printed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import yaml

from injector.cli.yamlfile import read_yaml
from injector.core.model import NamespaceInfo
from injector.core.plan import INJECT_FALSE, NAMESPACE_DISABLED, NOT_REQUESTED
from injector.core.pods import PodSite, check_pod, find_pods, with_pod
from injector.core.reasons import reasons
from injector.core.render import RenderResult, render
from injector.core.settings import Settings
from injector.errors import ConfigError, InjectionDenied, NotAPod

# Skips of pods that did not ask for injection: not worth a note.
QUIET_SKIPS = (NOT_REQUESTED, INJECT_FALSE, NAMESPACE_DISABLED)


@dataclass(frozen=True)
class Options:
    """What the command line says about the manifests."""

    namespace: str = "default"  # of objects that name none
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    version_origin: str = ""  # where settings.cluster_version comes from


@dataclass(frozen=True)
class Outcome:
    """One pod (template): what render made of it, or why it could not."""

    site: PodSite
    namespace: NamespaceInfo
    result: RenderResult | None
    error: str | None = None
    warnings: tuple[str, ...] = ()


def parse_labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--namespace-label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def read_documents(filename: str) -> list[Any]:
    """The YAML documents of ``-f`` (``-``: standard input)."""
    return read_yaml(filename, f"-f {filename}")


def namespaces_in(documents: list[Any]) -> dict[str, Mapping[str, str]]:
    """Labels of the Namespace objects in the manifests (Lists included)."""
    found: dict[str, Mapping[str, str]] = {}
    pending = list(documents)
    while pending:
        document = pending.pop()
        if not isinstance(document, Mapping):
            continue
        items = document.get("items")
        if str(document.get("kind", "")).endswith("List") and isinstance(items, list):
            pending += items
        elif document.get("kind") == "Namespace":
            metadata = document.get("metadata") or {}
            labels = metadata.get("labels") or {}
            found[str(metadata.get("name"))] = {str(k): str(v) for k, v in labels.items()}
    return found


def evaluate(
    documents: list[Any], options: Options, settings: Settings
) -> Iterator[tuple[int, list[str], list[Outcome]]]:
    """Per document: its index, notes about it, and an outcome per pod in it."""
    labels = namespaces_in(documents)
    for index, document in enumerate(documents):
        found = find_pods(document, f"document {index + 1}", options.namespace)
        outcomes = []
        for site in found.sites:
            name = site.pod.get("metadata", {}).get("namespace") or options.namespace
            own = labels.get(name, {})
            extra = options.namespace_labels if name == options.namespace else {}
            outcomes.append(_outcome(site, NamespaceInfo(name, {**own, **extra}), settings))
        yield index, list(found.notes), outcomes


def _outcome(site: PodSite, namespace: NamespaceInfo, settings: Settings) -> Outcome:
    try:
        pod = check_pod(site.pod, site.location)
        return Outcome(site, namespace, render(pod, namespace, settings))
    except InjectionDenied as exc:
        return Outcome(site, namespace, None, str(exc), exc.warnings)
    except NotAPod as exc:
        return Outcome(site, namespace, None, str(exc))


def run_inject(
    options: Options, settings: Settings, documents: list[Any], out: TextIO, err: TextIO
) -> int:
    results: list[Any] = []
    errors: list[str] = []
    for index, notes, outcomes in evaluate(documents, options, settings):
        document = documents[index]
        for note in notes:
            print(f"warning: {note}", file=err)
        for outcome in outcomes:
            label = outcome.site.label
            result = outcome.result
            for warning in outcome.warnings + (result.warnings if result else ()):
                print(f"warning: {label}: {warning}", file=err)
            if result is None:
                errors.append(f"{label}: {outcome.error}")
            elif result.skip is not None and result.skip.reason not in QUIET_SKIPS:
                skip = result.skip
                print(f"note: {label}: skipped ({skip.reason}): {skip.message}", file=err)
            elif result.injected:
                document = with_pod(document, outcome.site, result.pod)
        results.append(document)
    if errors:
        for error in errors:
            print(f"error: {error}", file=err)
        return 1
    dump_yaml(results, out)
    return 0


def run_explain(options: Options, settings: Settings, documents: list[Any], out: TextIO) -> int:
    reports: list[dict[str, Any]] = []
    for _, notes, outcomes in evaluate(documents, options, settings):
        reports += [{"injected": False, "why": note} for note in notes]
        reports += [_report(outcome, options, settings) for outcome in outcomes]
    dump_yaml(reports, out)
    return 0


def _report(outcome: Outcome, options: Options, settings: Settings) -> dict[str, Any]:
    site, namespace, result = outcome.site, outcome.namespace, outcome.result
    report: dict[str, Any] = {"object": site.label, "namespace": namespace.name}
    if result is None:
        report |= {"injected": False, "why": f"denied: {outcome.error}"}
    elif result.skip is not None:
        report |= {"injected": False, "why": f"{result.skip.reason}: {result.skip.message}"}
    elif result.plan is not None:
        request = result.request
        assert request is not None  # injected: the annotations were read
        why = reasons(request, namespace, settings, result.plan, options.version_origin)
        report |= {
            "injected": True,
            "why": why.pop("injected"),
            "roles": list(result.roles),
            "reasons": why,
            "settings": result.plan.describe(),
        }
    warnings = outcome.warnings + (result.warnings if result else ())
    if warnings:
        report["warnings"] = list(warnings)
    return report


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no &anchors/*aliases for objects that happen to be shared."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(documents: list[Any], stream: Any = None) -> Any:
    return yaml.dump_all(documents, stream, Dumper=_Dumper, sort_keys=False)
