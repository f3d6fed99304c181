"""``sidecar config`` settings: flags and ``SIDECAR_*`` variables, read once."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from contract.reload import ReloadTarget, parse_reload
from contract.units import parse_address, parse_duration
from sidecar.errors import UsageError
from sidecar.options import ArgumentParser, convert, flag, required

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SOURCE_HELP = "an http(s):// URL, 'configmap:NAME' or 'secret:NAME'"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class UrlSource:
    url: str

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class KubeSource:
    kind: str  # "configmap" or "secret"
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


Source = UrlSource | KubeSource


@dataclass(frozen=True)
class KubeAccess:
    api: str
    token_file: Path
    ca_file: Path | None
    namespace: str


@dataclass(frozen=True)
class ConfigSettings:
    source: Source
    directory: Path
    file_name: str
    interval: float
    init: bool
    deadline: float
    reload: ReloadTarget | None
    agent_host: str
    agent_port: int
    log_level: str
    kube: KubeAccess | None


def parse_source(text: str) -> Source:
    value = text.strip()
    if value.startswith(("http://", "https://")):
        return UrlSource(value)
    kind, sep, name = value.partition(":")
    if sep and kind in ("configmap", "secret") and _dns_name(name):
        return KubeSource(kind, name)
    raise ValueError(f"{text!r} is not {SOURCE_HELP} (NAME a lowercase DNS name)")


def _default_file_name(source: Source) -> str:
    """The URL's last path segment when it makes a plain file name, else ``config``."""
    if isinstance(source, UrlSource):
        last = urlsplit(source.url).path.rstrip("/").rpartition("/")[2]
        if last and not last.startswith(".") and all(c.isalnum() or c in "-._" for c in last):
            return last
    return "config"


def _dns_name(name: str) -> bool:
    return (
        0 < len(name) <= 253
        and all(c.isdigit() or c in "-." or ("a" <= c <= "z") for c in name)
        and name[0].isalnum()
        and name[-1].isalnum()
    )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="sidecar config", description=__doc__)
    parser.add_argument("--init", action="store_true", help="fetch once, write, exit")

    def add(name: str, env: str, default: str | None, help_text: str) -> None:
        flag(parser, name, env, default=default, help_text=help_text, environ=environ)

    add("--source", "SIDECAR_CONFIG_SOURCE", None, SOURCE_HELP)
    add("--dir", "SIDECAR_CONFIG_DIR", "/var/run/sidecar/config", "where the files go")
    add(
        "--file",
        "SIDECAR_CONFIG_FILE",
        None,
        "URL sources: the file name of the body (default: the URL's last path segment)",
    )
    add("--interval", "SIDECAR_CONFIG_INTERVAL", "30s", "URL poll interval / watch timeout")
    add("--deadline", "SIDECAR_INIT_DEADLINE", "60s", "--init gives up after this long")
    add("--reload", "SIDECAR_RELOAD", None, "how to tell the app")
    add("--agent-addr", "SIDECAR_AGENT_ADDR", "0.0.0.0:15022", "health/metrics address")
    add("--log-level", "SIDECAR_LOG_LEVEL", "info", "debug, info, warning or error")
    add("--namespace", "SIDECAR_POD_NAMESPACE", None, "ConfigMap/Secret namespace")
    add("--kube-api", "SIDECAR_KUBE_API", None, "API server URL")
    add("--kube-token-file", "SIDECAR_KUBE_TOKEN_FILE", str(SA_DIR / "token"), "bearer token")
    add("--kube-ca-file", "SIDECAR_KUBE_CA_FILE", str(SA_DIR / "ca.crt"), "API server CA")
    return parser


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> ConfigSettings:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(list(argv))
    source = convert(
        required(args.source, "--source", "SIDECAR_CONFIG_SOURCE", SOURCE_HELP),
        parse_source,
        "--source",
        "SIDECAR_CONFIG_SOURCE",
    )
    interval = convert(args.interval, parse_duration, "--interval", "SIDECAR_CONFIG_INTERVAL")
    if interval < 1:
        raise UsageError(f"--interval / SIDECAR_CONFIG_INTERVAL: {args.interval!r} is below 1s")
    if args.file is None:
        args.file = _default_file_name(source)
    if "/" in args.file or args.file.startswith(".") or not args.file:
        raise UsageError(
            f"--file / SIDECAR_CONFIG_FILE: {args.file!r} must be a plain file name "
            "(no '/', not starting with '.')"
        )
    if args.log_level not in LOG_LEVELS:
        raise UsageError(
            f"--log-level / SIDECAR_LOG_LEVEL: {args.log_level!r} is not one of "
            f"{', '.join(LOG_LEVELS)}"
        )
    host, port = convert(args.agent_addr, parse_address, "--agent-addr", "SIDECAR_AGENT_ADDR")
    return ConfigSettings(
        source=source,
        directory=Path(args.dir),
        file_name=args.file,
        interval=interval,
        init=bool(args.init),
        deadline=convert(args.deadline, parse_duration, "--deadline", "SIDECAR_INIT_DEADLINE"),
        reload=convert(args.reload, parse_reload, "--reload", "SIDECAR_RELOAD")
        if args.reload
        else None,
        agent_host=host,
        agent_port=port,
        log_level=args.log_level,
        kube=_kube_access(args, env) if isinstance(source, KubeSource) else None,
    )


def _kube_access(args: argparse.Namespace, env: Mapping[str, str]) -> KubeAccess:
    api = args.kube_api
    if not api:
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise UsageError(
                "--kube-api / SIDECAR_KUBE_API is required outside a cluster "
                "(KUBERNETES_SERVICE_HOST is not set)"
            )
        api = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
    if not api.startswith(("http://", "https://")):
        raise UsageError(f"--kube-api / SIDECAR_KUBE_API: {api!r} is not an http(s) URL")
    namespace = args.namespace
    if not namespace:
        try:
            namespace = (SA_DIR / "namespace").read_text().strip()
        except OSError:
            raise UsageError(
                "--namespace / SIDECAR_POD_NAMESPACE is required: the pod's namespace "
                "(the injector renders it from the downward API)"
            ) from None
    ca = Path(args.kube_ca_file) if args.kube_ca_file else None
    return KubeAccess(
        api.rstrip("/"),
        Path(args.kube_token_file),
        ca if api.startswith("https://") else None,
        namespace,
    )
