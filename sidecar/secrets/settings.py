"""``sidecar secrets`` settings: flags and ``SIDECAR_*`` variables, read once."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from contract.reload import ReloadTarget, parse_reload
from contract.units import parse_address, parse_bool, parse_duration
from sidecar.errors import UsageError
from sidecar.options import ArgumentParser, convert, flag, required

LOG_LEVELS = ("debug", "info", "warning", "error")
_NAME = re.compile(r"^[a-zA-Z0-9][-._a-zA-Z0-9]{0,252}$")
# What the injector accepts (injector.model._SECRET_PATH), plus a KV v2 ``?version=N``.
_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@=+\-/]*(\?version=[0-9]+)?$")
SECRETS_HELP = (
    'a JSON list such as [{"name": "db", "path": "database/creds/app", '
    '"template": "json", "mode": "0440"}]'
)


@dataclass(frozen=True)
class SecretSpec:
    name: str
    path: str
    template: str | None  # None: "key: value" lines; "json"; or a Jinja2 template
    mode: int | None


@dataclass(frozen=True)
class SecretsSettings:
    vault_addr: str
    role: str
    auth_path: str
    vault_namespace: str | None
    vault_cacert: Path | None
    token_file: Path
    secrets: tuple[SecretSpec, ...]
    secrets_dir: Path
    state_dir: Path
    file_group: int | None
    kv_interval: float
    init: bool
    deadline: float
    revoke_on_exit: bool
    reload: ReloadTarget | None
    agent_host: str
    agent_port: int
    log_level: str

    def file_mode(self, spec: SecretSpec) -> int:
        if spec.mode is not None:
            return spec.mode
        return 0o440 if self.file_group is not None else 0o444


def parse_secrets(text: str) -> tuple[SecretSpec, ...]:
    try:
        items = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON; expected {SECRETS_HELP}") from None
    if not isinstance(items, list) or not items:
        raise ValueError(f"expected a non-empty list: {SECRETS_HELP}")
    specs: list[SecretSpec] = []
    for item in items:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("path"), str)
        ):
            raise ValueError(f"each entry needs string 'name' and 'path': {SECRETS_HELP}")
        name, path = item["name"], item["path"].strip("/")
        if not _NAME.match(name) or name.startswith(".."):
            raise ValueError(f"secret name {name!r} cannot be a file name (letters, digits, -._)")
        if not _PATH.match(path) or ".." in path.split("?")[0].split("/"):
            raise ValueError(
                f"secret {name}: path {item['path']!r} is not a Vault API path "
                "such as secret/data/app or database/creds/app"
            )
        mode = item.get("mode")
        if mode is not None:
            if not isinstance(mode, str) or not re.fullmatch(r"0?[0-7]{3}", mode):
                raise ValueError(f"secret {name}: mode {mode!r} is not an octal mode like '0440'")
            mode_bits = int(mode, 8)
            if mode_bits & 0o222 & ~0o200 or mode_bits & 0o111:
                raise ValueError(
                    f"secret {name}: mode {mode} lets others write or execute; "
                    "use 0400, 0440 or 0444"
                )
        template = item.get("template")
        if template is not None and not isinstance(template, str):
            raise ValueError(f"secret {name}: template must be a string")
        specs.append(
            SecretSpec(
                name, path, template or None, int(mode, 8) if isinstance(mode, str) else None
            )
        )
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"secret names must be unique; repeated: {', '.join(duplicates)}")
    return tuple(specs)


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="sidecar secrets")
    parser.add_argument("--init", action="store_true", help="render every secret once, exit")

    def add(name: str, env: str, default: str | None, help_text: str) -> None:
        flag(parser, name, env, default=default, help_text=help_text, environ=environ)

    add("--vault-addr", "SIDECAR_VAULT_ADDR", None, "Vault address, e.g. https://vault:8200")
    add("--role", "SIDECAR_VAULT_ROLE", None, "kubernetes auth role")
    add("--auth-path", "SIDECAR_VAULT_AUTH_PATH", "kubernetes", "auth mount")
    add("--vault-namespace", "SIDECAR_VAULT_NAMESPACE", None, "X-Vault-Namespace")
    add("--vault-cacert", "SIDECAR_VAULT_CACERT", None, "CA bundle for https Vault")
    add("--token-file", "SIDECAR_TOKEN_FILE", "/var/run/sidecar/token/token", "SA JWT")
    add("--secrets", "SIDECAR_SECRETS", None, SECRETS_HELP)
    add("--secrets-dir", "SIDECAR_SECRETS_DIR", "/var/run/secrets/sidecar", "output dir")
    add("--state-dir", "SIDECAR_STATE_DIR", "/var/run/sidecar/state", "token/lease hand-off")
    add("--file-group", "SIDECAR_FILE_GROUP", None, "gid owning the files (pod fsGroup)")
    add("--kv-interval", "SIDECAR_KV_INTERVAL", "5m", "KV re-read interval")
    add("--deadline", "SIDECAR_INIT_DEADLINE", "60s", "--init gives up after this long")
    add("--revoke-on-exit", "SIDECAR_REVOKE_ON_EXIT", "false", "revoke the token on exit")
    add("--reload", "SIDECAR_RELOAD", None, "how to tell the app")
    add("--agent-addr", "SIDECAR_AGENT_ADDR", "0.0.0.0:15021", "health/metrics address")
    add("--log-level", "SIDECAR_LOG_LEVEL", "info", "debug, info, warning or error")
    return parser


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> SecretsSettings:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(list(argv))
    addr = required(args.vault_addr, "--vault-addr", "SIDECAR_VAULT_ADDR", "Vault's URL")
    if not addr.startswith(("http://", "https://")):
        raise UsageError(f"--vault-addr / SIDECAR_VAULT_ADDR: {addr!r} is not an http(s) URL")
    role = required(args.role, "--role", "SIDECAR_VAULT_ROLE", "the kubernetes auth role")
    specs = convert(
        required(args.secrets, "--secrets", "SIDECAR_SECRETS", SECRETS_HELP),
        parse_secrets,
        "--secrets",
        "SIDECAR_SECRETS",
    )
    group = None
    if args.file_group:
        if not args.file_group.isdigit():
            raise UsageError(f"--file-group / SIDECAR_FILE_GROUP: {args.file_group!r} is not a gid")
        group = int(args.file_group)
    if args.log_level not in LOG_LEVELS:
        raise UsageError(
            f"--log-level / SIDECAR_LOG_LEVEL: {args.log_level!r} is not one of "
            f"{', '.join(LOG_LEVELS)}"
        )
    host, port = convert(args.agent_addr, parse_address, "--agent-addr", "SIDECAR_AGENT_ADDR")
    auth_path = args.auth_path.strip("/")
    if auth_path.startswith("auth/"):
        auth_path = auth_path[len("auth/") :]
    return SecretsSettings(
        vault_addr=addr.rstrip("/"),
        role=role,
        auth_path=auth_path,
        vault_namespace=args.vault_namespace or None,
        vault_cacert=Path(args.vault_cacert) if args.vault_cacert else None,
        token_file=Path(args.token_file),
        secrets=specs,
        secrets_dir=Path(args.secrets_dir),
        state_dir=Path(args.state_dir),
        file_group=group,
        kv_interval=convert(
            args.kv_interval, parse_duration, "--kv-interval", "SIDECAR_KV_INTERVAL"
        ),
        init=bool(args.init),
        deadline=convert(args.deadline, parse_duration, "--deadline", "SIDECAR_INIT_DEADLINE"),
        revoke_on_exit=convert(
            args.revoke_on_exit, parse_bool, "--revoke-on-exit", "SIDECAR_REVOKE_ON_EXIT"
        ),
        reload=convert(args.reload, parse_reload, "--reload", "SIDECAR_RELOAD")
        if args.reload
        else None,
        agent_host=host,
        agent_port=port,
        log_level=args.log_level,
    )
