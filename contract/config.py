"""The config role's rows (``sidecar config [--init]``): a URL, ConfigMap or
Secret kept as files in a shared volume."""

from __future__ import annotations

from pathlib import Path

from contract import layout, values
from contract.common import INIT_DEADLINE, POD_NAMESPACE, RELOAD, agent
from contract.knobs import Knob, Role
from contract.values import Source

SOURCE: Knob[Source] = Knob(
    "source",
    values.SOURCE,
    "where configuration comes from",
    accepted="an http(s):// URL, configmap:NAME or secret:NAME",
    env="SIDECAR_CONFIG_SOURCE",
    flag="--source",
    annotation="config-source",
    example="configmap:shop-config",
    doc_default="required",
    pod_default="none",
)
PATH: Knob[str] = Knob(
    "path",
    values.ABSOLUTE_PATH,
    "where configuration appears in the app containers (read-only)",
    annotation="config-path",
    example="/etc/shop",
    profile="configPath",
    default=layout.CONFIG_MOUNT,
)
DIRECTORY: Knob[Path] = Knob(
    "directory",
    values.DIRECTORY,
    "where the agent writes the file set",
    env="SIDECAR_CONFIG_DIR",
    flag="--dir",
    default=layout.CONFIG_DIR,
)
FILE_NAME: Knob[str] = Knob(
    "file_name",
    values.FILE_NAME,
    "URL sources: the file name of the body",
    env="SIDECAR_CONFIG_FILE",
    flag="--file",
    doc_default="the URL's last path segment (`.../app.yaml` -> `app.yaml`), else `config`",
)
INTERVAL: Knob[float] = Knob(
    "interval",
    values.INTERVAL,
    "how often a URL source is checked (a ConfigMap's watch timeout)",
    env="SIDECAR_CONFIG_INTERVAL",
    flag="--interval",
    default="30s",
    annotation="config-interval",
    example="45s",
    profile="configInterval",
)
NAMESPACE = POD_NAMESPACE  # where the ConfigMap or Secret is (shared with the proxy's mesh)
KUBE_API: Knob[str] = Knob(
    "kube_api",
    values.HTTP_URL,
    "API server URL",
    env="SIDECAR_KUBE_API",
    flag="--kube-api",
    doc_default="https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
)
KUBE_TOKEN_FILE: Knob[Path] = Knob(
    "kube_token_file",
    values.FILE,
    "bearer token, re-read on every request",
    env="SIDECAR_KUBE_TOKEN_FILE",
    flag="--kube-token-file",
    default=layout.SA_DIR + "/token",
)
KUBE_CA_FILE: Knob[Path] = Knob(
    "kube_ca_file",
    values.FILE,
    "API server CA, reloaded when it changes",
    env="SIDECAR_KUBE_CA_FILE",
    flag="--kube-ca-file",
    default=layout.SA_DIR + "/ca.crt",
)

ROLE = Role(
    "config",
    "configuration from a URL, ConfigMap or Secret, kept current, the app told",
    layout.CONFIG_AGENT_PORT,
    (
        *agent(layout.CONFIG_AGENT_PORT),
        SOURCE,
        PATH,
        INTERVAL,
        DIRECTORY,
        FILE_NAME,
        INIT_DEADLINE,
        RELOAD,
        NAMESPACE,
        KUBE_API,
        KUBE_TOKEN_FILE,
        KUBE_CA_FILE,
    ),
    init=True,
    trigger=SOURCE,
)
