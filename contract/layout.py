"""Names and numbers both sides must agree on: the annotation prefix, the
agent's user, ports, paths, volume and container names.

The injector renders them into pods; the agent's defaults (``Knob.default``
in the role rows) are written with them; docs/runtime.md is generated from
them. Nothing else spells these values.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "sidecar.example.io/"
NAMESPACE_LABEL: Final = PREFIX + "injection"
STATUS: Final = PREFIX + "status"

# The injected containers run as this user and group (all but sidecar-signal,
# which runs as the app's user for reload: signal).
AGENT_UID: Final = 1337
AGENT_GID: Final = 1337

# Ports of the proxy (Envoy's listeners and admin), and of each agent.
OUTBOUND_PORT: Final = 15001
INBOUND_PORT: Final = 15006
ADMIN_PORT: Final = 15000
CAPTURE_OUTBOUND_PORT: Final = 15002
CAPTURE_INBOUND_PORT: Final = 15003
EGRESS_PORT: Final = 15004
PROXY_AGENT_PORT: Final = 15020
SECRETS_AGENT_PORT: Final = 15021
CONFIG_AGENT_PORT: Final = 15022
SIGNAL_AGENT_PORT: Final = 15023  # sidecar signal, on 127.0.0.1
LOGS_AGENT_PORT: Final = 15024

# Paths inside the injected containers (and, read-only, the app's).
PROXY_WORK_DIR: Final = "/var/run/sidecar/proxy"
SECRETS_DIR: Final = "/var/run/secrets/sidecar"
STATE_DIR: Final = "/var/run/sidecar/state"
TOKEN_DIR: Final = "/var/run/sidecar/token"  # noqa: S105 (a path)
TOKEN_FILE: Final = TOKEN_DIR + "/token"
CONFIG_DIR: Final = "/var/run/sidecar/config"
CONFIG_MOUNT: Final = "/etc/sidecar/config"  # where app containers see config by default
SA_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
LOGS_PATH: Final = "/var/log/app"  # the logs agent's default; the pod's logs-path wins
LOGS_STATE_DIR: Final = "/var/run/sidecar/logs-state"
LOGS_AUTH_DIR: Final = "/var/run/sidecar/logs-auth"
LOGS_AUTH_FILE: Final = LOGS_AUTH_DIR + "/authorization"

# Containers the injector adds.
PROXY_CONTAINER: Final = "sidecar-proxy"
SECRETS_INIT_CONTAINER: Final = "sidecar-secrets-init"
SECRETS_CONTAINER: Final = "sidecar-secrets"
CONFIG_INIT_CONTAINER: Final = "sidecar-config-init"
CONFIG_CONTAINER: Final = "sidecar-config"
SIGNAL_CONTAINER: Final = "sidecar-signal"
CAPTURE_INIT_CONTAINER: Final = "sidecar-capture-init"
LOGS_CONTAINER: Final = "sidecar-logs"

# Volumes the injector adds.
PROXY_VOLUME: Final = "sidecar-proxy"
SECRETS_VOLUME: Final = "sidecar-secrets"
STATE_VOLUME: Final = "sidecar-secrets-state"
TOKEN_VOLUME: Final = "sidecar-vault-token"  # noqa: S105 (a volume name)
CONFIG_VOLUME: Final = "sidecar-config"
LOGS_VOLUME: Final = "sidecar-logs"
LOGS_STATE_VOLUME: Final = "sidecar-logs-state"
LOGS_AUTH_VOLUME: Final = "sidecar-logs-auth"
VAULT_AUDIENCE: Final = "vault"

# Mesh mTLS: the operator's certificate endpoint, what a meshed proxy mounts.
MESH_PORT: Final = 15012
MESH_AUDIENCE: Final = PREFIX + "identity"
MESH_SIGNER_NAME: Final = PREFIX + "mesh"  # PodCertificateRequests' signerName
MTLS_LABEL: Final = PREFIX + "mtls"  # on meshed pods: the operator lists them by it
IDENTITY_TOKEN_VOLUME: Final = "sidecar-identity-token"  # noqa: S105 (a volume name)
IDENTITY_TOKEN_DIR: Final = "/var/run/sidecar/identity"  # noqa: S105 (a path)
MESH_TRUST_CONFIGMAP: Final = "sidecar-mesh-trust"
MESH_TRUST_VOLUME: Final = "sidecar-mesh-trust"
MESH_TRUST_DIR: Final = "/var/run/sidecar/mesh-trust"
POD_CREDENTIALS_VOLUME: Final = "sidecar-pod-credentials"
POD_CREDENTIALS_DIR: Final = "/var/run/sidecar/pod-credentials"
POD_CREDENTIALS_FILE: Final = "credentials.pem"
