"""Kubernetes auth as a pod meets it: the right ServiceAccount and audience
log in; another ServiceAccount, namespace or audience is refused, and the
init container's last line (its termination message) says why.

Against the real Vault, every login is a TokenReview by the real API server
of a token it issued (TokenRequest, as the kubelet projects one).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from e2e import vault_dev
from e2e.postgres import Postgres
from tests.secrets.backends import Backend, Kube, RealBackend
from tests.secrets.conftest import REAL, args, last_line, run_init

KV = [{"name": "config", "path": "secret/data/app/config"}]


def init(backend: Backend, token: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    token_file = tmp_path / "sa-token"
    token_file.write_text(token)
    return run_init(["--deadline", "3s", *args(backend, token_file, tmp_path, KV)])


def test_the_bound_service_account_with_audience_vault_logs_in(
    backend: Backend, tmp_path: Path
) -> None:
    result = init(backend, backend.jwt("app", "shop", "vault"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secrets" / "config").read_text() == "api_key: k-123\nregion: eu\n"


REFUSED = (
    "sidecar secrets: secrets not rendered by the deadline (config): login as role 'app' "
    "denied at auth/kubernetes: POST auth/kubernetes/login: 403 "
)
UNCHECKED = (
    "permission denied (Vault could not check the token: auth/kubernetes must be a "
    "kubernetes auth mount (secrets-auth-path) whose config reaches this cluster's API "
    "server with a reviewer allowed to create TokenReviews (system:auth-delegator))"
)


@pytest.mark.parametrize(
    ("service_account", "namespace", "audience", "reason"),
    [
        (
            "other",
            "shop",
            "vault",
            "service account name not authorized (role 'app' does not bind this pod's "
            "ServiceAccount: add it to the role's bound_service_account_names or run the pod "
            "as one it binds)",
        ),
        (
            "app",
            "elsewhere",
            "vault",
            "namespace not authorized (role 'app' does not bind this pod's namespace: add it "
            "to the role's bound_service_account_namespaces)",
        ),
        (
            "app",
            "shop",
            "not-vault",
            "invalid audience (aud) claim: audience claim does not match any expected audience "
            "(the token's audience is not role 'app''s audience; the injector projects tokens "
            "for audience vault)",
        ),
    ],
    ids=["service-account", "namespace", "audience"],
)
def test_other_identities_are_refused_with_the_reason(
    backend: Backend,
    tmp_path: Path,
    service_account: str,
    namespace: str,
    audience: str,
    reason: str,
) -> None:
    """The pod shows one line: what Vault said, and what to change."""
    result = init(backend, backend.jwt(service_account, namespace, audience), tmp_path)
    assert result.returncode == 1
    assert last_line(result) == REFUSED + reason
    assert not (tmp_path / "secrets" / "config").exists()


def test_a_token_vault_cannot_check_names_the_mount_and_the_reviewer(
    backend: Backend, tmp_path: Path
) -> None:
    """Garbage, a forged signature or a wrong mount: Vault says only "permission denied"."""
    result = init(backend, "not-a-jwt", tmp_path)
    assert result.returncode == 1
    assert last_line(result) == REFUSED + UNCHECKED


@REAL
def test_the_reviewer_must_be_bound_to_auth_delegator(
    kube: Kube, postgres: Postgres, tmp_path: Path
) -> None:
    """Real Vault only (the stand-in reviews no token). Vault checks each login
    with a TokenReview made with its reviewer's token: a reviewer the API
    server does not allow to create TokenReviews refuses every pod, and the pod
    is told to look at the reviewer; bound to system:auth-delegator, the same
    reviewer lets the same pod in (the agent still retrying)."""
    reviewer = "vault-reviewer-unbound"
    namespace = vault_dev.REVIEWER[0]
    vault_dev.ensure_service_account(kube.api, namespace, reviewer)
    backend = RealBackend(tmp_path / "vault", kube, postgres)
    binding = f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{reviewer}-auth-delegator"
    kube.api.request("DELETE", binding)  # left by a killed run
    try:
        backend.add_role("app", ["app"], ["shop"], ["secret/data/app/"])
        backend.put_kv2("app/config", {"api_key": "k-reviewed"})
        token = vault_dev.service_account_token(kube.api, namespace, reviewer, None)
        vault_dev.write_kubernetes_auth_config(backend.vault, kube.info, token)
        result = init(backend, backend.jwt(), tmp_path)
        assert result.returncode == 1
        assert last_line(result) == REFUSED + UNCHECKED
        token_file = tmp_path / "sa-token"
        argv = ["--deadline", "30s", *args(backend, token_file, tmp_path, KV)]
        argv[argv.index("--log-level") + 1] = "warning"
        process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "secrets", "--init", *argv],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stderr is not None
            assert "permission denied" in process.stderr.readline()  # retrying
            vault_dev.bind_auth_delegator(kube.api, namespace, reviewer)
            assert process.wait(timeout=60) == 0
        finally:
            process.kill()
            process.wait()
        assert (tmp_path / "secrets" / "config").read_text() == "api_key: k-reviewed\n"
    finally:
        kube.api.request("DELETE", binding)
        backend.close()


def test_permission_denied_for_a_path_is_one_line(backend: Backend, tmp_path: Path) -> None:
    """Vault words a policy refusal over several lines; the pod's message stays one."""
    token_file = tmp_path / "sa-token"
    token_file.write_text(backend.jwt())
    spec = [{"name": "other", "path": "secret/data/other/thing"}]
    result = run_init(["--deadline", "3s", *args(backend, token_file, tmp_path, spec)])
    assert result.returncode == 1
    assert last_line(result) == (
        "sidecar secrets: secrets not rendered by the deadline (other): permission denied for "
        "path secret/data/other/thing: role 'app' has no policy that allows it "
        "(GET secret/data/other/thing: 403 permission denied)"
    )


@REAL
def test_https_vault_is_trusted_through_the_given_ca_only(
    kube: Kube, postgres: Postgres, tmp_path: Path
) -> None:
    """Real Vault only (the stand-in serves plain HTTP): ``-dev-tls`` makes a CA
    and a certificate for 127.0.0.1. The agent trusts it given as a file
    (--vault-cacert) or as PEM text in SIDECAR_VAULT_CACERT_PEM (what the
    injector passes from the profile's vault.caBundle); another CA is refused."""
    backend = RealBackend(tmp_path / "vault", kube, postgres, tls=True)
    try:
        backend.add_role("app", ["app"], ["shop"], ["secret/data/app/"])
        backend.put_kv2("app/config", {"api_key": "k-tls"})
        assert backend.addr.startswith("https://127.0.0.1:")
        token_file = tmp_path / "sa-token"
        token_file.write_text(backend.jwt())

        def init_with(*extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
            result = run_init(
                ["--deadline", "2s", *args(backend, token_file, tmp_path, KV, *extra)], env
            )
            return result.returncode, last_line(result)

        prefix = (
            "sidecar secrets: secrets not rendered by the deadline (config): Vault at "
            f"{backend.addr} (POST auth/kubernetes/login): unable to get local issuer "
            "certificate; its certificate must be signed by "
        )
        assert init_with() == (
            1,
            prefix + "a CA the system trusts; give Vault's CA with the profile's "
            "vault.caBundle (SIDECAR_VAULT_CACERT_PEM) or SIDECAR_VAULT_CACERT",
        )
        other_ca = {"SIDECAR_VAULT_CACERT_PEM": Path(kube.info.ca_file).read_text()}
        assert init_with(env=other_ca) == (
            1,
            prefix + "a CA in SIDECAR_VAULT_CACERT_PEM (the profile's vault.caBundle)",
        )
        ca = backend.vault.ca_file
        assert init_with("--vault-cacert", str(ca))[0] == 0
        assert (tmp_path / "secrets" / "config").read_text() == "api_key: k-tls\n"
        (tmp_path / "secrets" / "config").unlink()
        assert init_with(env={"SIDECAR_VAULT_CACERT_PEM": ca.read_text()})[0] == 0
        assert (tmp_path / "secrets" / "config").read_text() == "api_key: k-tls\n"
    finally:
        backend.close()


def test_a_ca_that_is_not_pem_is_a_usage_error(tmp_path: Path) -> None:
    result = run_init(
        ["--vault-addr", "https://vault:8200", "--role", "app",
         "--secrets", '[{"name": "c", "path": "secret/data/c"}]'],
        {"SIDECAR_VAULT_CACERT_PEM": "not a certificate"},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "sidecar secrets: --vault-cacert-pem / SIDECAR_VAULT_CACERT_PEM: not PEM certificates; "
        "expected PEM certificates (-----BEGIN CERTIFICATE-----...), at most 64 KiB"
    )
