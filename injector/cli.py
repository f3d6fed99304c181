"""``sidecar-injector serve | inject | explain | annotations | version``.

Configuration (``--config``, ``--cluster-version``, ``--injector-namespace``)
is read once here and passed down as a frozen ``Settings``. An
``InjectorError`` becomes one line on stderr and an exit code (1: a pod was
denied, 2: bad usage or configuration), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from injector import __version__
from injector.annotations import markdown_table
from injector.errors import ConfigError, InjectionDenied, InjectorError
from injector.model import NamespaceInfo
from injector.render import render
from injector.settings import Settings, parse_version
from injector.workloads import dump_yaml, find_pod, namespaces_in, replace_pod
from sidecar.units import parse_address


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecar-injector",
        description="Kubernetes sidecar injector: webhook server and offline tools.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    def config_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="YAML settings: profiles, cluster version")
        p.add_argument("--cluster-version", help="Kubernetes version, e.g. 1.30 (native sidecars)")
        p.add_argument("--injector-namespace", help="the injector's own namespace (never injected)")

    serve = sub.add_parser("serve", help="serve the admission webhook over TLS")
    serve.add_argument("--listen", default="0.0.0.0:8443", help="HOST:PORT [0.0.0.0:8443]")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate (chain)")
    serve.add_argument("--tls-key", type=Path, help="PEM private key")
    serve.add_argument(
        "--ca-out",
        type=Path,
        help="without --tls-cert: where to write the generated CA for curl --cacert "
        "[TMPDIR/sidecar-injector-ca.crt]",
    )
    serve.add_argument(
        "--dns-name", action="append", default=[], help="extra DNS name for the generated cert"
    )
    serve.add_argument(
        "--failure-policy",
        choices=("Fail", "Ignore"),
        default="Fail",
        help="answer to an internal error: deny (Fail) or admit unchanged (Ignore) [Fail]",
    )
    serve.add_argument(
        "--operator", action="store_true", help="also run the operator's control loops"
    )
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    config_options(serve)
    operator_options(serve)

    for name, text in (
        ("inject", "inject pods and pod templates in YAML manifests, print the result"),
        ("explain", "say for each pod whether and how it would be injected"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
        p.add_argument("-n", "--namespace", default="default", help="namespace of unnamespaced")
        p.add_argument(
            "--namespace-label",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a label of that namespace, e.g. sidecar.example.io/injection=enabled",
        )
        config_options(p)

    annotations = sub.add_parser("annotations", help="print the annotation reference")
    annotations.add_argument("--markdown", action="store_true", help="as a Markdown table")
    sub.add_parser("version", help="print the version")
    return parser


def operator_options(serve: argparse.ArgumentParser) -> None:
    """Flags of ``serve --operator`` (read by ``injector.operator.OperatorOptions``)."""
    group = serve.add_argument_group(
        "operator (with --operator; the namespace is --injector-namespace, else $POD_NAMESPACE)"
    )
    group.add_argument("--service", help="the webhook's Service, for the cert [sidecar-injector]")
    group.add_argument(
        "--tls-secret", dest="secret", help="Secret holding the certs [sidecar-injector-tls]"
    )
    group.add_argument(
        "--webhook-configuration", help="MutatingWebhookConfiguration to patch [sidecar-injector]"
    )
    group.add_argument("--lease", help="Lease for leader election [sidecar-injector]")
    group.add_argument(
        "--cert-ip", dest="cert_ips", action="append", default=[], help="extra IP SAN"
    )
    group.add_argument("--ca-validity", help="CA lifetime [8760h]")
    group.add_argument("--cert-validity", help="serving certificate lifetime [2160h]")
    group.add_argument(
        "--renew-fraction", type=float, help="renew when less than this share is left [0.333]"
    )
    group.add_argument(
        "--cert-check-interval", dest="cert_interval", help="how often the Secret is read [30s]"
    )


def load_settings(args: argparse.Namespace) -> Settings:
    settings = Settings.load(args.config) if args.config else Settings()
    changes: dict[str, Any] = {}
    if args.cluster_version:
        changes["cluster_version"] = parse_version(args.cluster_version)
    if args.injector_namespace:
        changes["injector_namespace"] = args.injector_namespace
    return settings.replace(**changes) if changes else settings


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "version":
            print(__version__)
            return 0
        if args.command == "annotations":
            print(markdown_table(), end="")
            return 0
        settings = load_settings(args)
        if args.command == "serve":
            return run_serve(args, settings)
        documents = read_documents(args.filename)
        if args.command == "inject":
            return run_inject(args, settings, documents, sys.stdout, sys.stderr)
        return run_explain(args, settings, documents, sys.stdout)
    except InjectorError as exc:
        print(f"sidecar-injector {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141


def read_documents(filename: str) -> list[Any]:
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as exc:
        raise ConfigError(f"-f {filename}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"-f {filename}: not valid YAML: {exc}") from None


def _namespace(args: argparse.Namespace, documents: list[Any], name: str | None) -> NamespaceInfo:
    ns = name or args.namespace
    labels = dict(namespaces_in(documents)).get(ns, {})
    if ns == args.namespace:
        for item in args.namespace_label:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--namespace-label {item!r}: expected KEY=VALUE")
            labels = {**labels, key: value}
    return NamespaceInfo(ns, labels)


def run_inject(
    args: argparse.Namespace,
    settings: Settings,
    documents: list[Any],
    out: TextIO,
    err: TextIO,
) -> int:
    results: list[Any] = []
    errors: list[str] = []
    for document in documents:
        site = find_pod(document)
        if site is None:
            results.append(document)
            continue
        namespace = _namespace(args, documents, site.namespace)
        try:
            result = render(site.pod, namespace, settings, job=site.job)
        except InjectionDenied as exc:
            for warning in exc.warnings:
                print(f"warning: {site.label}: {warning}", file=err)
            errors.append(f"{site.label}: {exc}")
            continue
        for warning in result.warnings:
            print(f"warning: {site.label}: {warning}", file=err)
        results.append(replace_pod(document, site, result.pod) if result.injected else document)
    if errors:
        for error in errors:
            print(f"error: {error}", file=err)
        return 1
    dump_yaml(results, out)
    return 0


def run_explain(
    args: argparse.Namespace, settings: Settings, documents: list[Any], out: TextIO
) -> int:
    reports: list[dict[str, Any]] = []
    for document in documents:
        site = find_pod(document)
        if site is None:
            continue
        namespace = _namespace(args, documents, site.namespace)
        report: dict[str, Any] = {"object": site.label, "namespace": namespace.name}
        try:
            result = render(site.pod, namespace, settings, job=site.job)
        except InjectionDenied as exc:
            report |= {"injected": False, "why": f"denied: {exc}"}
            if exc.warnings:
                report["warnings"] = list(exc.warnings)
            reports.append(report)
            continue
        if result.skip is not None:
            report |= {"injected": False, "why": f"{result.skip.reason}: {result.skip.message}"}
        elif result.plan is not None:
            report |= {
                "injected": True,
                "why": _why(site.pod, namespace),
                "roles": list(result.roles),
                "settings": result.plan.describe(),
            }
        if result.warnings:
            report["warnings"] = list(result.warnings)
        reports.append(report)
    dump_yaml(reports, out)
    return 0


def _why(pod: Any, namespace: NamespaceInfo) -> str:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if "sidecar.example.io/inject" in annotations:
        return 'the pod says sidecar.example.io/inject: "true"'
    return f"namespace {namespace.name} has injection enabled"


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from injector.serve import (  # noqa: PLC0415
        bind,
        build_context,
        load_operator,
        self_signed,
        serve,
        url,
        write_ca,
    )

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        host, port = parse_address(args.listen)
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}") from None
    operator = load_operator() if args.operator else None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together; give both or neither")
    sock = bind(host, port)  # port 0: an ephemeral port, printed below
    port = int(sock.getsockname()[1])
    ctx = build_context(settings, host, port, failure_policy=args.failure_policy)
    if args.tls_cert:
        try:
            ctx.tls.load_files(str(args.tls_cert), str(args.tls_key))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--tls-cert/--tls-key: cannot load them: {exc}") from None
    elif not args.operator:
        ca, serving = self_signed(host, args.dns_name)
        ctx.tls.load(serving)
        ca_out = args.ca_out or Path(tempfile.gettempdir()) / "sidecar-injector-ca.crt"
        write_ca(ca_out, ca)
        print(f"sidecar-injector: self-signed CA written to {ca_out}", file=sys.stderr)
    ctx.options.update(vars(args))
    print(f"sidecar-injector: serving {url(host, port)}/mutate", file=sys.stderr, flush=True)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: make that a clean exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(serve(ctx, operator, sock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
