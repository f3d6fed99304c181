"""The secrets role's rows (``sidecar secrets [--init]``): Vault login,
which secrets, where they go.

``secret-NAME`` and ``secret-template-NAME`` are a family of annotations:
the injector gathers them into one ``SIDECAR_SECRETS`` list (``SECRETS``).
"""

from __future__ import annotations

from pathlib import Path

from contract import layout, values, vault
from contract.common import INIT_DEADLINE, RELOAD, agent
from contract.knobs import Knob, Role
from contract.values import SecretsMode
from contract.vault import MOUNT, SECRET_PATH, SECRETS_HELP, SecretSpec

VAULT_ADDR: Knob[str] = Knob(
    "vault_addr",
    values.HTTP_URL,
    "Vault address (tested: Vault v1.21.0); an https Vault's certificate is checked against "
    "the profile's vault.caBundle, else the system's CAs",
    env="SIDECAR_VAULT_ADDR",
    flag="--vault-addr",
    annotation="secrets-vault-addr",
    example="https://vault.example.io:8200",
    profile="vault.address",
    doc_default="required",
    pod_default="the profile's Vault address",
)
ROLE_NAME: Knob[str] = Knob(
    "role",
    values.TEXT,
    "Vault kubernetes auth role; it must bind the pod's ServiceAccount and namespace, "
    "audience vault",
    env="SIDECAR_VAULT_ROLE",
    flag="--role",
    annotation="secrets-role",
    example="shop",
    profile="vault.role",
    accepted="a role name",
    doc_default="required",
    pod_default="the profile's Vault role",
)
AUTH_PATH: Knob[str] = Knob(
    "auth_path",
    MOUNT,
    "Vault kubernetes auth mount (logins go to auth/PATH/login)",
    env="SIDECAR_VAULT_AUTH_PATH",
    flag="--auth-path",
    default="kubernetes",
    annotation="secrets-auth-path",
    example="k8s-east",
    profile="vault.authPath",
    pod_default="the profile's, else kubernetes",
)
VAULT_NAMESPACE: Knob[str] = Knob(
    "vault_namespace",
    values.TEXT,
    "Vault namespace (X-Vault-Namespace)",
    env="SIDECAR_VAULT_NAMESPACE",
    flag="--vault-namespace",
    profile="vault.namespace",
    example="team-a",
)
VAULT_CACERT: Knob[Path] = Knob(
    "vault_cacert",
    values.FILE,
    "CA bundle for an https Vault",
    env="SIDECAR_VAULT_CACERT",
    flag="--vault-cacert",
    doc_default="the system bundle",
)
# A CA certificate (EC P-256, self-signed, "example Vault CA"): the row's example.
EXAMPLE_CA = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBNjCB3qADAgECAgEBMAoGCCqGSM49BAMCMBsxGTAXBgNVBAMMEGV4YW1wbGUg\n"
    "VmF1bHQgQ0EwHhcNMjYwMTAxMDAwMDAwWhcNMzUxMjMwMDAwMDAwWjAbMRkwFwYD\n"
    "VQQDDBBleGFtcGxlIFZhdWx0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
    "VUvhnI7u3MA464mTl/JgF2tSJRgycLomPGrjFWAzvbxQhJQ0X2jKiae7pp8uZKBs\n"
    "gO28VTDnVbdmXX8okdfmpaMTMBEwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD\n"
    "AgNHADBEAiAj+6MZ8ijdyG7/CP+KSc38c+RQGgxPBbKO/jKrLiGcLgIgbp4NwzKd\n"
    "ChzPmc9kyd96KlpTFaxi6uN9EOLeswz7oe8=\n"
    "-----END CERTIFICATE-----\n"
)
VAULT_CA_BUNDLE: Knob[str] = Knob(
    "vault_ca_pem",
    values.PEM_CERTIFICATES,
    "the CAs of an https Vault as PEM text, trusted with --vault-cacert's instead of the system's",
    env="SIDECAR_VAULT_CACERT_PEM",
    flag="--vault-cacert-pem",
    profile="vault.caBundle",
    example=EXAMPLE_CA,
)
TOKEN_FILE: Knob[Path] = Knob(
    "token_file",
    values.FILE,
    "service-account JWT, re-read on each login",
    env="SIDECAR_TOKEN_FILE",
    flag="--token-file",
    default=layout.TOKEN_FILE,
)
SECRET: Knob[str] = Knob(
    "secret",
    SECRET_PATH,
    f"Vault secret at this path, rendered to {layout.SECRETS_DIR}/NAME",
    annotation="secret-NAME",
    example="database/creds/shop",
    accepted=f"{SECRET_PATH.accepted}; NAME a file name (letters, digits, -._)",
    doc_default="",
)
TEMPLATE: Knob[str] = Knob(
    "template",
    values.TEXT,
    "how the file of secret NAME is rendered",
    annotation="secret-template-NAME",
    example="json",
    accepted="`json`, or a Jinja2 template",
    doc_default="`key: value` lines",
)
SECRETS: Knob[tuple[SecretSpec, ...]] = Knob(
    "secrets",
    vault.SECRETS,
    f"the secrets, {SECRETS_HELP}; the injector writes it from the secret-NAME and "
    "secret-template-NAME annotations",
    env="SIDECAR_SECRETS",
    flag="--secrets",
    doc_default="required",
)
MODE: Knob[SecretsMode] = Knob(
    "mode",
    values.SECRETS_MODE,
    "prepopulate before the app starts, refresh while it runs, or both",
    annotation="secrets-mode",
    example="sidecar",
    profile="secretsMode",
    default="both",
    doc_default="both (init for Job pods without native sidecars)",
)
SECRETS_DIR: Knob[Path] = Knob(
    "secrets_dir",
    values.DIRECTORY,
    "where files are written",
    env="SIDECAR_SECRETS_DIR",
    flag="--secrets-dir",
    default=layout.SECRETS_DIR,
)
STATE_DIR: Knob[Path] = Knob(
    "state_dir",
    values.DIRECTORY,
    "token and lease hand-off from init to refresher",
    env="SIDECAR_STATE_DIR",
    flag="--state-dir",
    default=layout.STATE_DIR,
)
FILE_GROUP: Knob[int] = Knob(
    "file_group",
    values.GID,
    "gid owning the files; the injector sets the pod's fsGroup",
    env="SIDECAR_FILE_GROUP",
    flag="--file-group",
)
KV_INTERVAL: Knob[float] = Knob(
    "kv_interval",
    values.DURATION,
    "KV re-read interval (a KV v1 secret's shorter ttl wins)",
    env="SIDECAR_KV_INTERVAL",
    flag="--kv-interval",
    default="5m",
)
REVOKE_ON_EXIT: Knob[bool] = Knob(
    "revoke_on_exit",
    values.BOOL,
    "revoke the token when the refresher stops",
    env="SIDECAR_REVOKE_ON_EXIT",
    flag="--revoke-on-exit",
    default="false",
)

ROLE = Role(
    "secrets",
    "Vault secrets rendered to files before the app starts, then kept fresh",
    layout.SECRETS_AGENT_PORT,
    (
        *agent(layout.SECRETS_AGENT_PORT),
        SECRET,
        TEMPLATE,
        VAULT_ADDR,
        ROLE_NAME,
        AUTH_PATH,
        MODE,
        VAULT_NAMESPACE,
        VAULT_CACERT,
        VAULT_CA_BUNDLE,
        TOKEN_FILE,
        SECRETS,
        SECRETS_DIR,
        STATE_DIR,
        FILE_GROUP,
        KV_INTERVAL,
        INIT_DEADLINE,
        REVOKE_ON_EXIT,
        RELOAD,
    ),
    init=True,
    trigger=SECRET,
)
