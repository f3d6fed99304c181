"""``sidecar-injector serve | inject | explain | annotations | version``.

Configuration (``--config``, ``--cluster-version``, ``--cluster-domain``,
``--injector-namespace``) is read once here and passed down as a frozen ``Settings``. An
``InjectorError`` becomes one line on stderr and an exit code (1: a pod was
denied, 2: bad usage or configuration), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.reference import annotation_table, annotation_text
from contract.units import parse_address
from injector import __version__
from injector.cli import config_file, offline
from injector.core.settings import (
    NATIVE_SIDECARS_SINCE,
    Settings,
    parse_cluster_domain,
    parse_version,
)
from injector.errors import ConfigError, InjectorError
from injector.operator import mesh_options

if TYPE_CHECKING:
    from injector.admission.serve import OperatorHook


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecar-injector",
        description="Kubernetes sidecar injector: the admission webhook (serve) and the same "
        "injection offline on YAML manifests (inject, explain).",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_options(sub)
    offline_options(sub)
    annotations = sub.add_parser(
        "annotations",
        help="Print the annotation reference.",
        description="Print every annotation a pod may set: its meaning, accepted values "
        "and default.",
    )
    annotations.add_argument(
        "--markdown",
        action="store_true",
        help="Print it as the Markdown table of the README instead of plain text.",
    )
    sub.add_parser("version", help="Print the version.", description="Print the version.")
    return parser


Subparsers = Any  # argparse's _SubParsersAction, private in typeshed


def serve_options(sub: Subparsers) -> None:
    serve = sub.add_parser(
        "serve",
        help="Serve the admission webhook over TLS.",
        description="Serve the admission webhook (POST /mutate) over TLS, with /healthz, "
        "/readyz and /metrics.",
    )
    serve.add_argument(
        "--listen",
        default="0.0.0.0:8443",
        help="Listen on this HOST:PORT; port 0 picks a free one and prints it [0.0.0.0:8443].",
    )
    serve.add_argument("--tls-cert", type=Path, help="Serve this PEM certificate (chain).")
    serve.add_argument("--tls-key", type=Path, help="The PEM private key of --tls-cert.")
    serve.add_argument(
        "--ca-out",
        type=Path,
        help="Without --tls-cert, a self-signed CA is generated: write it here, for "
        "curl --cacert [TMPDIR/sidecar-injector-ca.crt].",
    )
    serve.add_argument(
        "--dns-name",
        action="append",
        default=[],
        help="Add this DNS name to the generated certificate (repeatable).",
    )
    serving_options(serve)
    config_options(serve, offline=False)
    operator_options(serve)
    mesh_options.add_flags(serve)


def serving_options(serve: argparse.ArgumentParser) -> None:
    """How ``serve`` answers: failure policy, processes, logs, metrics."""
    serve.add_argument(
        "--failure-policy",
        choices=("Fail", "Ignore"),
        default="Fail",
        help="On an internal error, deny the pod (Fail) or admit it unchanged with a "
        "warning (Ignore); match the webhook configuration's failurePolicy [Fail].",
    )
    serve.add_argument(
        "--operator",
        action="store_true",
        help="Also run the operator's control loops (certificates, caBundle, profiles, "
        "namespace labels, leader election).",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning"),
        help="Log at this level and above [info].",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        help="Serve with this many processes, one per core; 0: one per core the process may "
        "use (its CPU affinity and cgroup CPU limit) [0].",
    )
    serve.add_argument(
        "--metrics-listen",
        help="Also serve /metrics over plain HTTP on this HOST:PORT (its own port, so a "
        "NetworkPolicy can open it to monitoring and nothing else) [none].",
    )
    serve.add_argument(
        "--offload-above",
        type=int,
        default=256 * 1024,
        metavar="BYTES",
        help="Review a pod larger than this in the supervisor process, off the workers' "
        "event loops [262144].",
    )


def offline_options(sub: Subparsers) -> None:
    for name, text in (
        ("inject", "Print YAML manifests with every pod and pod template injected."),
        ("explain", "Say for each pod and pod template whether and how it would be injected."),
    ):
        p = sub.add_parser(name, help=text, description=text + " " + OFFLINE_HELP)
        p.add_argument(
            "-f",
            "--filename",
            required=True,
            help="Read the manifests from this YAML file (several documents allowed); - "
            "reads standard input.",
        )
        p.add_argument(
            "-n",
            "--namespace",
            default="default",
            help="Treat objects that name no namespace as being in this one [default].",
        )
        p.add_argument(
            "--namespace-label",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Give the --namespace namespace this label, e.g. "
            "sidecar.example.io/injection=enabled (repeatable; Namespace objects in the "
            "manifests bring their own labels).",
        )
        config_options(p, offline=True)


OFFLINE_HELP = (
    "Uses the profiles of --config (else the built-in default profile) and the same "
    "injection code as the webhook; nothing is sent to a cluster."
)


def config_options(p: argparse.ArgumentParser, *, offline: bool) -> None:
    p.add_argument(
        "--config",
        type=Path,
        help="Take profiles and settings from this YAML file: SidecarProfile manifests "
        "(e.g. manifests/base/sidecarprofile-default.yaml) or the injector's own format "
        "(README: Settings files).",
    )
    version_help = (
        "Render for this Kubernetes version, e.g. 1.28 (classic sidecars before 1.29); "
        + (
            "without it, a release with native sidecars (1.29 or later) is assumed."
            if offline
            else "without it, --operator asks the API server, else classic sidecars."
        )
    )
    p.add_argument("--cluster-version", help=version_help)
    p.add_argument(
        "--injector-namespace",
        help="The injector's own namespace, whose pods are never injected [sidecar-injector].",
    )
    domain_default = "cluster.local" if offline else "/etc/resolv.conf's, else cluster.local"
    p.add_argument(
        "--cluster-domain",
        help="The cluster's DNS domain (the kubelet's --cluster-domain), for NO_PROXY of "
        f"proxy-egress [{domain_default}].",
    )


def operator_options(serve: argparse.ArgumentParser) -> None:
    """Flags of ``serve --operator`` (read by ``injector.operator.options.OperatorOptions``)."""
    group = serve.add_argument_group(
        "operator (with --operator; the namespace is --injector-namespace, else $POD_NAMESPACE)"
    )
    group.add_argument(
        "--service", help="Name the webhook's Service in the certificate [sidecar-injector]."
    )
    group.add_argument(
        "--tls-secret",
        dest="secret",
        help="Keep the CA and serving certificate in this Secret [sidecar-injector-tls].",
    )
    group.add_argument(
        "--webhook-configuration",
        help="Patch the caBundle of this MutatingWebhookConfiguration [sidecar-injector].",
    )
    group.add_argument("--lease", help="Elect the leader with this Lease [sidecar-injector].")
    group.add_argument(
        "--cert-ip",
        dest="cert_ips",
        action="append",
        default=[],
        help="Add this IP address to the serving certificate (repeatable).",
    )
    group.add_argument("--ca-validity", help="Make the CA valid this long [8760h].")
    group.add_argument(
        "--cert-validity", help="Make the serving certificate valid this long [2160h]."
    )
    group.add_argument(
        "--renew-fraction",
        type=float,
        help="Renew a certificate when less than this share of its lifetime is left [0.333].",
    )
    group.add_argument(
        "--cert-check-interval",
        dest="cert_interval",
        help="Read the certificate Secret this often [30s].",
    )


OFFLINE_VERSION_NOTE = (
    "assumed, as no --cluster-version is given: every Kubernetes release still supported "
    "has native sidecars; --cluster-version 1.28 renders classic sidecars"
)


def load_settings(args: argparse.Namespace) -> tuple[Settings, str]:
    """The settings, and where their cluster version comes from (for ``explain``)."""
    settings = config_file.load(args.config) if args.config else Settings()
    changes: dict[str, Any] = {}
    if args.injector_namespace:
        changes["injector_namespace"] = args.injector_namespace
    if args.cluster_domain:
        changes["cluster_domain"] = parse_cluster_domain(args.cluster_domain)
    elif settings.cluster_domain is None and args.command == "serve":
        changes["cluster_domain"] = config_file.resolver_domain()  # the injector's own pod
    if args.cluster_version:
        changes["cluster_version"] = parse_version(args.cluster_version)
        origin = f"--cluster-version {args.cluster_version}"
    elif settings.cluster_version is not None:
        origin = f"clusterVersion in {args.config}"
    elif args.command in ("inject", "explain"):
        changes["cluster_version"] = NATIVE_SIDECARS_SINCE
        origin = OFFLINE_VERSION_NOTE
    else:
        origin = "unknown until the operator asks the API server"
    return (settings.replace(**changes) if changes else settings), origin


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "version":
            print(__version__)
            return 0
        if args.command == "annotations":
            print(annotation_table() if args.markdown else annotation_text(), end="")
            return 0
        settings, version_origin = load_settings(args)
        if args.command == "serve":
            return run_serve(args, settings)
        options = offline.Options(
            args.namespace, offline.parse_labels(args.namespace_label), version_origin
        )
        documents = offline.read_documents(args.filename)
        if args.command == "inject":
            return offline.run_inject(options, settings, documents, sys.stdout, sys.stderr)
        return offline.run_explain(options, settings, documents, sys.stdout)
    except InjectorError as exc:
        print(f"sidecar-injector {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141


def _operator(args: argparse.Namespace, settings: Settings) -> tuple[OperatorHook | None, Settings]:
    """The ``--operator`` hook (None without it) and the settings it implies: the
    mesh certificate endpoint rendered into pods (none without an operator)."""
    if not args.operator:
        return None, settings.replace(mesh_signer=mesh_options.signer(args.mesh_signer, None))
    from injector.operator.controller import hook  # noqa: PLC0415 (kopf only with --operator)
    from injector.operator.options import OperatorOptions  # noqa: PLC0415

    options = OperatorOptions.from_mapping(vars(args))
    signer = mesh_options.signer(args.mesh_signer, options.mesh_signer())
    return hook(options), settings.replace(mesh_signer=signer)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from injector.admission.serve import (  # noqa: PLC0415 (inject/explain never load the server)
        bind,
        build_context,
        run,
        self_signed,
        url,
        write_ca,
    )
    from injector.admission.workers import available_cores  # noqa: PLC0415

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        host, port = parse_address(args.listen)
        metrics_address = parse_address(args.metrics_listen) if args.metrics_listen else None
    except ValueError as exc:
        raise ConfigError(f"--listen/--metrics-listen: {exc}") from None
    if args.workers < 0:
        raise ConfigError(f"--workers: {args.workers} is not 0 (one per core) or more")
    workers = args.workers or available_cores()
    operator, settings = _operator(args, settings)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together; give both or neither")
    sock = bind(host, port)  # port 0: an ephemeral port, printed below
    port = int(sock.getsockname()[1])
    metrics_sock = bind(*metrics_address) if metrics_address else None
    ctx = build_context(settings, host, port, failure_policy=args.failure_policy, processes=workers)
    ctx.offload_above = args.offload_above
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
    if metrics_sock is not None and metrics_address is not None:
        metrics_port = metrics_sock.getsockname()[1]
        print(
            f"sidecar-injector: metrics on http://{metrics_address[0]}:{metrics_port}/metrics",
            file=sys.stderr,
        )
    print(
        f"sidecar-injector: serving {url(host, port)}/mutate ({workers} workers)",
        file=sys.stderr,
        flush=True,
    )
    return run(ctx, sock, workers=workers, operator=operator, metrics_sock=metrics_sock)


if __name__ == "__main__":
    sys.exit(main())
