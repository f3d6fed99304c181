"""``sidecar config`` settings: flags and ``SIDECAR_*`` variables, read once,
from the role's rows in ``contract.config``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from contract import config as rows
from contract import layout
from contract.common import INIT_DEADLINE, LOG_LEVEL, RELOAD
from contract.knobs import Values
from contract.reload import ReloadTarget
from contract.values import SOURCE_HELP, KubeSource, LogLevel, Source, UrlSource
from sidecar.errors import UsageError
from sidecar.options import need, read_knobs, role_parser

__all__ = ["ConfigSettings", "KubeAccess", "KubeSource", "Source", "UrlSource", "load"]


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
    log_level: LogLevel
    kube: KubeAccess | None


def _default_file_name(source: Source) -> str:
    """The URL's last path segment when it makes a plain file name, else ``config``."""
    if isinstance(source, UrlSource):
        last = urlsplit(source.url).path.rstrip("/").rpartition("/")[2]
        if last and not last.startswith(".") and all(c.isalnum() or c in "-._" for c in last):
            return last
    return "config"


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    return role_parser(rows.ROLE, environ, __doc__ or "")


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> ConfigSettings:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(list(argv))
    v = read_knobs(args, rows.ROLE.knobs)
    source = need(v, rows.SOURCE, SOURCE_HELP)
    host, port = v.require(rows.ROLE.knob("agent_addr"))
    return ConfigSettings(
        source=source,
        directory=v.require(rows.DIRECTORY),
        file_name=v.get(rows.FILE_NAME) or _default_file_name(source),
        interval=v.require(rows.INTERVAL),
        init=bool(args.init),
        deadline=v.require(INIT_DEADLINE),
        reload=v.get(RELOAD),
        agent_host=host,
        agent_port=port,
        log_level=v.require(LOG_LEVEL),
        kube=_kube_access(v, env) if isinstance(source, KubeSource) else None,
    )


def _kube_access(v: Values, env: Mapping[str, str]) -> KubeAccess:
    api = v.get(rows.KUBE_API)
    if not api:
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise UsageError(
                "--kube-api / SIDECAR_KUBE_API is required outside a cluster "
                "(KUBERNETES_SERVICE_HOST is not set)"
            )
        api = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
    namespace = v.get(rows.NAMESPACE)
    if not namespace:
        try:
            namespace = (Path(layout.SA_DIR) / "namespace").read_text().strip()
        except OSError:
            raise UsageError(
                "--namespace / SIDECAR_POD_NAMESPACE is required: the pod's namespace "
                "(the injector renders it from the downward API)"
            ) from None
    ca = v.require(rows.KUBE_CA_FILE)
    return KubeAccess(
        api.rstrip("/"),
        v.require(rows.KUBE_TOKEN_FILE),
        ca if api.startswith("https://") else None,
        namespace,
    )
