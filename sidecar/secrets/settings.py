"""``sidecar secrets`` settings: flags and ``SIDECAR_*`` variables, read once,
from the role's rows in ``contract.secrets``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from contract import secrets as rows
from contract.common import INIT_DEADLINE, LOG_LEVEL, RELOAD
from contract.reload import ReloadTarget
from contract.values import LogLevel
from contract.vault import SECRETS_HELP, SecretSpec
from sidecar.options import need, read_knobs, role_parser

__all__ = ["SecretSpec", "SecretsSettings", "build_parser", "load"]


@dataclass(frozen=True)
class SecretsSettings:
    vault_addr: str
    role: str
    auth_path: str
    vault_namespace: str | None
    vault_cacert: Path | None
    vault_ca_pem: str | None
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
    log_level: LogLevel

    def file_mode(self, spec: SecretSpec) -> int:
        if spec.mode is not None:
            return spec.mode
        return 0o440 if self.file_group is not None else 0o444


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    return role_parser(rows.ROLE, environ, "Render Vault secrets to files and keep them fresh.")


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> SecretsSettings:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(list(argv))
    v = read_knobs(args, rows.ROLE.knobs)
    host, port = v.require(rows.ROLE.knob("agent_addr"))
    return SecretsSettings(
        vault_addr=need(v, rows.VAULT_ADDR, "Vault's URL"),
        role=need(v, rows.ROLE_NAME, "the kubernetes auth role"),
        auth_path=v.require(rows.AUTH_PATH),
        vault_namespace=v.get(rows.VAULT_NAMESPACE),
        vault_cacert=v.get(rows.VAULT_CACERT),
        vault_ca_pem=v.get(rows.VAULT_CA_BUNDLE),
        token_file=v.require(rows.TOKEN_FILE),
        secrets=need(v, rows.SECRETS, SECRETS_HELP),
        secrets_dir=v.require(rows.SECRETS_DIR),
        state_dir=v.require(rows.STATE_DIR),
        file_group=v.get(rows.FILE_GROUP),
        kv_interval=v.require(rows.KV_INTERVAL),
        init=bool(args.init),
        deadline=v.require(INIT_DEADLINE),
        revoke_on_exit=v.require(rows.REVOKE_ON_EXIT),
        reload=v.get(RELOAD),
        agent_host=host,
        agent_port=port,
        log_level=v.require(LOG_LEVEL),
    )
