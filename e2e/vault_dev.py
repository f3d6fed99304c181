"""A real HashiCorp Vault in dev mode on 127.0.0.1, logging pods in through
the API server's TokenReview.

``DevVault`` runs ``vault server -dev`` (built from Go modules by
``e2e.vault_build``): in-memory storage, KV v2 at ``secret/``, root token
``root``, its own process group, stopped by PID (and killed with the process
that started it unless detached). ``seal``/``unseal`` use the dev unseal key
from its output; ``restart`` keeps the port and loses everything else (every
token, lease, mount and policy), as a dev server does.

``configure_kubernetes_auth`` does what a Vault operator does for a cluster:
a reviewer ServiceAccount bound to ``system:auth-delegator`` (Vault sends
each login's JWT to the API server in a TokenReview with its token), then
``auth/<mount>/config`` with the API server's URL and CA.

    python -m e2e.vault_dev up               # start one for the running control plane
    python -m e2e.vault_dev env              # print its export lines
    python -m e2e.vault_dev token demo/demo  # a token of that ServiceAccount, audience vault
    python -m e2e.vault_dev down             # stop it

``up`` keeps its state in ``~/.cache/sidecar-injector/vault`` and, when a
control plane from ``make cluster-up`` runs, enables kubernetes auth there,
a policy and role ``demo`` (ServiceAccount ``demo/demo``, audience ``vault``)
and a KV v2 secret ``secret/demo/config``: what the README's example uses.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from e2e import build, cluster, vault_build

ROOT_TOKEN = "root"
REVIEWER = ("vault", "vault-reviewer")  # namespace, ServiceAccount
Json = dict[str, Any]


class VaultDevError(RuntimeError):
    """The dev server could not be started, or refused a set-up call; says which."""


class DevVault:
    def __init__(
        self, state_dir: Path, port: int = 0, *, detach: bool = False, tls: bool = False
    ) -> None:
        self.state_dir = state_dir
        self.port = port
        self.detach = detach
        self.tls = tls
        self.unseal_key = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """With ``tls``: the CA of the certificate ``-dev-tls`` made for 127.0.0.1."""
        return self.state_dir / "tls" / "vault-ca.pem"

    @property
    def log(self) -> Path:
        return self.state_dir / "vault.log"

    def start(self) -> DevVault:
        binary = vault_build.ensure()
        (self.state_dir / "tls").mkdir(parents=True, exist_ok=True)  # -dev-tls writes there
        fixed = self.port != 0  # a restart keeps its port: clients know it
        for _attempt in range(3):
            self.port = self.port or cluster.free_port()
            self.log.write_bytes(b"")
            self.process = cluster._spawn(self._command(binary), self.log, detach=self.detach)
            try:
                cluster._poll(self._healthy, f"vault on {self.addr}", self.process, self.log)
            except cluster.ClusterError as exc:
                self.stop()
                if fixed or "address already in use" not in str(exc):
                    raise VaultDevError(str(exc)) from None
                self.port = 0
                continue
            # The banner with the unseal key comes a moment after /sys/health answers.
            cluster._poll(self._banner, f"vault's unseal key in {self.log}", self.process, self.log)
            return self
        raise VaultDevError(f"vault: no free port after 3 tries; see {self.log}")

    def _command(self, binary: Path) -> list[str]:
        return [
            str(binary),
            "server",
            "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            "-dev-no-store-token",  # leave ~/.vault-token alone
            # The state directory in the command line: `down` and orphan checks
            # recognise our process by it.
            f"-config={self._config()}",
            *(["-dev-tls", f"-dev-tls-cert-dir={self.state_dir / 'tls'}"] if self.tls else []),
        ]

    def _config(self) -> Path:
        path = self.state_dir / "vault.hcl"
        path.write_text('disable_mlock = true\nui = false\nlog_level = "warn"\n')
        return path

    def _banner(self) -> bool:
        found = re.search(r"^Unseal Key: (\S+)$", self.log.read_text(), re.M)
        self.unseal_key = found.group(1) if found else ""
        return found is not None

    def _healthy(self) -> bool:
        status, _ = self.request("GET", "sys/health", token=None)
        return status == 200

    def stop(self) -> None:
        if self.process is not None:
            cluster._stop_group(self.process.pid)
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Stop and start on the same port: a fresh, empty dev server."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def seal(self) -> None:
        self.write("sys/seal", {})

    def unseal(self) -> None:
        self.write("sys/unseal", {"key": self.unseal_key})

    def request(
        self, method: str, path: str, body: Json | None = None, token: str | None = ROOT_TOKEN
    ) -> tuple[int, Json]:
        request = urllib.request.Request(
            f"{self.addr}/v1/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"X-Vault-Token": token} if token else {},
        )
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else {}

    def write(self, path: str, body: Json) -> Json:
        """A root-token write that must succeed (set-up): raises naming the path."""
        status, answer = self.request("POST", path, body)
        if status >= 400:
            raise VaultDevError(f"vault: POST {path}: {status} {answer.get('errors')}")
        return answer

    def read(self, path: str) -> Json:
        status, answer = self.request("GET", path)
        if status >= 400:
            raise VaultDevError(f"vault: GET {path}: {status} {answer.get('errors')}")
        return answer

    def delete(self, path: str) -> None:
        status, answer = self.request("DELETE", path)
        if status >= 400:
            raise VaultDevError(f"vault: DELETE {path}: {status} {answer.get('errors')}")


def service_account_token(
    api: cluster.Api, namespace: str, name: str, audience: str | None, seconds: int = 3600
) -> str:
    """A bound token from the TokenRequest API, as the kubelet projects one
    (audience None: the API server's own, for calling it)."""
    spec: dict[str, Any] = {"expirationSeconds": seconds}
    if audience is not None:
        spec["audiences"] = [audience]
    status, body = api.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", {"spec": spec}
    )
    if status != 201:
        raise VaultDevError(f"token for {namespace}/{name}: HTTP {status}: {body.get('message')}")
    return str(body["status"]["token"])


def ensure_service_account(api: cluster.Api, namespace: str, name: str) -> None:
    cluster.ensure_namespace(api, namespace)
    status, body = api.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}}
    )
    if status not in (201, 409):
        raise VaultDevError(f"ServiceAccount {namespace}/{name}: HTTP {status}: {body}")


def reviewer_token(api: cluster.Api) -> str:
    """The reviewer ServiceAccount, bound to system:auth-delegator, and a token for it."""
    namespace, name = REVIEWER
    ensure_service_account(api, namespace, name)
    bind_auth_delegator(api, namespace, name)
    return service_account_token(api, namespace, name, None, 86400)


def bind_auth_delegator(api: cluster.Api, namespace: str, name: str) -> None:
    """ClusterRoleBinding NAME-auth-delegator: system:auth-delegator (create
    TokenReviews) for the ServiceAccount."""
    binding = {
        "metadata": {"name": f"{name}-auth-delegator"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:auth-delegator",
        },
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    status, body = api.request(
        "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding
    )
    if status not in (201, 409):
        raise VaultDevError(f"ClusterRoleBinding for {name}: HTTP {status}: {body}")


def configure_kubernetes_auth(
    vault: DevVault, info: cluster.ClusterInfo, reviewer_jwt: str, mount: str = "kubernetes"
) -> None:
    vault.write(f"sys/auth/{mount}", {"type": "kubernetes"})
    write_kubernetes_auth_config(vault, info, reviewer_jwt, mount)


def write_kubernetes_auth_config(
    vault: DevVault, info: cluster.ClusterInfo, reviewer_jwt: str, mount: str = "kubernetes"
) -> None:
    """The mount's config: the API server's URL and CA, the reviewer's token."""
    vault.write(
        f"auth/{mount}/config",
        {
            "kubernetes_host": info.server,
            "kubernetes_ca_cert": Path(info.ca_file).read_text(),
            "token_reviewer_jwt": reviewer_jwt,
            "disable_local_ca_jwt": True,  # Vault runs outside the cluster
        },
    )


def _state_dir() -> Path:
    return Path(os.environ.get("SIDECAR_VAULT_STATE", build.CACHE / "vault"))


def _up(state_dir: Path) -> int:
    pid_file = state_dir / "vault.pid"
    if _running(state_dir) is None:
        shutil.rmtree(state_dir, ignore_errors=True)
        vault = DevVault(state_dir, detach=True).start()
        assert vault.process is not None
        pid_file.write_text(f"{vault.process.pid} {vault.port}\n")
        info = cluster.running(cluster.default_state_dir())
        if info is not None:
            _demo(vault, info)
        else:
            cluster._say("no control plane running (make cluster-up): kubernetes auth not set up")
    sys.stdout.write(_exports(state_dir))
    return 0


def _demo(vault: DevVault, info: cluster.ClusterInfo) -> None:
    api = cluster.Api(info)
    configure_kubernetes_auth(vault, info, reviewer_token(api))
    ensure_service_account(api, "demo", "demo")
    vault.write(
        "sys/policies/acl/demo", {"policy": 'path "secret/data/demo/*" { capabilities = ["read"] }'}
    )
    vault.write(
        "auth/kubernetes/role/demo",
        {
            "bound_service_account_names": ["demo"],
            "bound_service_account_namespaces": ["demo"],
            "audience": "vault",
            "token_policies": ["demo"],
            "token_ttl": "10m",
        },
    )
    vault.write("secret/data/demo/config", {"data": {"greeting": "hello from Vault"}})


def _token(account: str) -> int:
    info = cluster.running(cluster.default_state_dir())
    if info is None:
        cluster._say("no control plane running; start one with `make cluster-up`")
        return 1
    namespace, _, name = account.partition("/")
    print(service_account_token(cluster.Api(info), namespace, name or namespace, "vault"))
    return 0


def _running(state_dir: Path) -> tuple[int, int] | None:
    try:
        pid, port = map(int, (state_dir / "vault.pid").read_text().split())
    except (OSError, ValueError):
        return None
    if cluster._alive(pid) and cluster._owned_by(pid, state_dir):
        return pid, port
    return None


def _exports(state_dir: Path) -> str:
    found = _running(state_dir)
    if found is None:
        return ""
    return f"export VAULT_ADDR=http://127.0.0.1:{found[1]}\nexport VAULT_TOKEN={ROOT_TOKEN}\n"


def _down(state_dir: Path) -> int:
    found = _running(state_dir)
    if found is not None:
        cluster._stop_group(found[0])
    shutil.rmtree(state_dir, ignore_errors=True)
    cluster._say("vault stopped" if found else "no vault running")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.vault_dev", description=__doc__)
    parser.add_argument("verb", choices=["up", "down", "env", "token"])
    parser.add_argument("account", nargs="?", default="demo/demo", help="NAMESPACE/NAME")
    args = parser.parse_args(argv)
    verb = args.verb
    state_dir = _state_dir().resolve()
    try:
        if verb == "up":
            return _up(state_dir)
        if verb == "down":
            return _down(state_dir)
        if verb == "token":
            return _token(args.account)
        exports = _exports(state_dir)
        sys.stdout.write(exports)
        return 0 if exports else 1
    except (VaultDevError, cluster.ClusterError, build.BuildError) as exc:
        cluster._say(str(exc))
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
