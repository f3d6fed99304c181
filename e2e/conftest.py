"""Fixtures of the e2e suite: a cluster from KUBECONFIG, our injector admitting
its pods, a fresh namespace per test, kubectl, and raw API/etcd access.

Two ways to run:
- ``make e2e-local``: ``python -m e2e.cluster run`` starts the local control
  plane and sets ``SIDECAR_E2E_CLUSTER``; the suite then runs the injector as
  a local process (``e2e.harness.LocalInjector``) behind our webhook
  configuration, rewritten to ``url: https://127.0.0.1:PORT/mutate``.
- ``make e2e`` against any cluster (kind, ...): the injector must already be
  installed there (``kubectl apply -k manifests/overlays/e2e``, which
  ``make e2e-kind`` does); the suite only waits until it injects. Set
  ``SIDECAR_E2E_INJECTOR=local`` to run it as a local process there too
  (needs an API server that can reach 127.0.0.1 on this machine).

Tests needing running pods are marked ``nodes`` and skip without Ready nodes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.request
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e import harness, install, node_config
from e2e.cluster import ClusterInfo, free_port
from e2e.kube import Kube, KubeError


@dataclass(frozen=True)
class ApiAccess:
    """Enough to talk to the API server without a kubeconfig (URL + CA + bearer token)."""

    server: str
    ca_file: str | None
    token: str


@dataclass(frozen=True)
class Etcd:
    """The local control plane's etcd, for tests that must force 410 Gone."""

    url: str

    def _post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, object] = json.loads(response.read())
            return result

    def revision(self) -> int:
        key = base64.b64encode(b"/").decode()
        header = self._post("/v3/kv/range", {"key": key, "count_only": True})["header"]
        assert isinstance(header, dict)
        return int(header["revision"])

    def compact(self) -> int:
        """Compact etcd up to its current revision; watches from older ones get 410."""
        revision = self.revision()
        self._post("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision


class Injector:
    """The injector under test: a local process, or the one installed in the cluster."""

    def __init__(self, kube: Kube, local: harness.LocalInjector | None) -> None:
        self.kube = kube
        self.local = local
        self.probe_namespace = kube.create_namespace("e2e-probe")

    def require_local(self) -> harness.LocalInjector:
        if self.local is None:
            pytest.skip("needs the injector as a local process (make e2e-local)")
        return self.local

    def wait_ready(self) -> None:
        harness.wait_until_injecting(self.kube, self.probe_namespace)


STARTUPS: list[tuple[str, float]] = []


def record_startup(what: str, seconds: float) -> None:
    """A start-up time measured on the cluster, printed at the end of the run."""
    STARTUPS.append((what, seconds))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for what, seconds in STARTUPS:
        terminalreporter.write_line(f"e2e: {what}: {seconds:.1f}s")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """With SIDECAR_TESTS_NO_SKIP (CI: .ci/run), a skipped ``nodes`` or
    ``sandbox`` test fails instead: CI runs them all, on the local node."""
    report: pytest.TestReport = yield
    wanted = item.get_closest_marker("nodes") or item.get_closest_marker("sandbox")
    if report.skipped and wanted and os.environ.get("SIDECAR_TESTS_NO_SKIP"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, which SIDECAR_TESTS_NO_SKIP forbids here: {reason}"
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def local_cluster() -> ClusterInfo | None:
    path = os.environ.get("SIDECAR_E2E_CLUSTER")
    return ClusterInfo.load(Path(path)) if path else None


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    kubeconfig = os.environ.get("KUBECONFIG")
    try:
        client = Kube(kubeconfig)
        client.get("/version").expect(200)
    except Exception as exc:
        pytest.fail(
            f"no reachable cluster (KUBECONFIG={kubeconfig or 'unset'}): {exc}. "
            "Run `make e2e-local` for a local control plane, or point KUBECONFIG at a "
            "cluster with the injector installed and run `make e2e`.",
            pytrace=False,
        )
    yield client
    client.close()


@pytest.fixture(scope="session")
def has_nodes(kube: Kube) -> bool:
    return kube.has_nodes()


@pytest.fixture(autouse=True)
def _skip_without_nodes(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("nodes") and not request.getfixturevalue("has_nodes"):
        pytest.skip("needs running nodes (kind); this cluster has no Ready node")


@pytest.fixture(scope="session")
def kubectl(local_cluster: ClusterInfo | None) -> str:
    """kubectl of the same version as the local API server, else the one on PATH."""
    explicit = os.environ.get("KUBECTL")
    if explicit:
        return explicit
    if local_cluster is not None:
        return local_cluster.kubectl
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl not found (set KUBECTL or put it on PATH)")
    return found


@pytest.fixture(scope="session")
def injector(
    kube: Kube,
    kubectl: str,
    local_cluster: ClusterInfo | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Injector]:
    """Local mode: manifests/overlays/e2e applied (webhook URL rewritten) and the
    Deployment's command line run here as its ServiceAccount (the operator
    patches caBundle); without that overlay, or with SIDECAR_E2E_OPERATOR=0,
    ``serve`` alone behind a stand-in configuration. Install mode
    (``SIDECAR_E2E_INJECTOR=install``, clusters with nodes that hold the
    images): the overlay applied with kubectl as an operator would
    (``e2e.install``), the injector running as its Deployment. Cluster mode:
    the injector already installed in the cluster."""
    mode = os.environ.get("SIDECAR_E2E_INJECTOR", "local" if local_cluster else "cluster")
    installed: harness.Installed | None = None
    problem = None
    if mode == "local":
        workdir = tmp_path_factory.mktemp("injector")
        kubeconfig = os.environ.get("KUBECONFIG")
        overlay = harness.manifests_overlay()
        try:
            if overlay is not None and os.environ.get("SIDECAR_E2E_OPERATOR", "1") != "0":
                node_ip = node_config.NODE_IP if local_cluster and local_cluster.node else None
                installed = harness.install_with_operator(
                    kube, kubectl, kubeconfig, overlay, workdir, free_port(), node_ip
                )
            else:
                installed = harness.install_webhook_only(kube, kubeconfig, workdir, free_port())
            installed.injector.start()
        except (KubeError, harness.HarnessError) as exc:
            problem = f"could not start the local injector: {exc}"
    elif mode == "install":
        overlay = harness.manifests_overlay()
        try:
            if overlay is None or not kube.has_nodes():
                raise harness.HarnessError("needs manifests/overlays/e2e and a Ready node")
            install.install(kube, kubectl, os.environ.get("KUBECONFIG"), overlay)
        except (KubeError, harness.HarnessError) as exc:
            problem = f"could not install the injector with the e2e overlay: {exc}"
    elif harness.ca_bundle(kube, harness.WEBHOOK_CONFIGURATION) is None:
        problem = (
            f"this cluster has no MutatingWebhookConfiguration {harness.WEBHOOK_CONFIGURATION} "
            "with a caBundle: install the injector first (`make e2e-kind` does: kind cluster, "
            "images, kubectl apply -k manifests/overlays/e2e), or run `make e2e-local`"
        )
    under_test = Injector(kube, installed.injector if installed else None)
    if problem is None:
        try:
            under_test.wait_ready()
        except (KubeError, harness.HarnessError) as exc:
            tail = installed.injector.log_tail() if installed else ""
            problem = f"the injector never admitted a probe pod: {exc}\n{tail}"
    if problem is not None:
        if installed is not None:
            installed.injector.stop()
        kube.delete_namespace(under_test.probe_namespace)
        pytest.fail(problem, pytrace=False)
    yield under_test
    if installed is not None:
        harness.delete_webhook_configuration(kube, installed.webhook_configuration)
        installed.injector.stop()
    kube.delete_namespace(under_test.probe_namespace)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace (deleted ones stay Terminating without a controller-manager)."""
    name = kube.create_namespace()
    yield name
    kube.delete_namespace(name)


@pytest.fixture(scope="session")
def api_access(kube: Kube, local_cluster: ClusterInfo | None) -> ApiAccess:
    """URL + CA + an admin bearer token. Local control plane: the static token
    (``--token-auth-file``); elsewhere: the kubeconfig's token, or "" when it
    authenticates otherwise (then use ``service_account_token``)."""
    if local_cluster is not None:
        return ApiAccess(local_cluster.server, local_cluster.ca_file, local_cluster.token)
    token = kube.configuration.get_api_key_with_prefix("authorization") or ""
    return ApiAccess(
        kube.server,
        kube.configuration.ssl_ca_cert,
        token.removeprefix("Bearer ") if token.startswith("Bearer ") else "",
    )


def service_account_token(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    seconds: int = 3600,
    audiences: list[str] | None = None,
) -> str:
    """Create ServiceAccount namespace/name (if missing) and a token for it (TokenRequest)."""
    created = kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}}
    )
    if created.status not in (201, 409):
        created.expect(201)
    spec: dict[str, object] = {"expirationSeconds": seconds}
    if audiences:
        spec["audiences"] = audiences
    body = kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    ).expect(201)
    return str(body["status"]["token"])


CONFIGMAP_READER: list[dict[str, object]] = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
]


def service_account_dir(
    kube: Kube,
    access: ApiAccess,
    namespace: str,
    name: str,
    directory: Path,
    rules: list[dict[str, object]] | None = None,
) -> dict[str, str]:
    """What a kubelet gives a pod, for an agent run as a local process: a
    ServiceAccount (with a Role of ``rules`` bound to it, if given), its token,
    ``ca.crt`` and ``namespace`` files in ``directory``. Returns the agent's
    environment (``SIDECAR_KUBE_API``, ``SIDECAR_KUBE_TOKEN_FILE``, ``SIDECAR_KUBE_CA_FILE``)."""
    token = service_account_token(kube, namespace, name)
    if rules is not None:
        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
        kube.create(f"{rbac}/roles", {"metadata": {"name": name}, "rules": rules}).expect(201)
        binding = {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }
        kube.create(f"{rbac}/rolebindings", binding).expect(201)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "namespace").write_text(namespace)
    env = {"SIDECAR_KUBE_API": access.server, "SIDECAR_KUBE_TOKEN_FILE": str(directory / "token")}
    if access.ca_file:
        shutil.copyfile(access.ca_file, directory / "ca.crt")
        env["SIDECAR_KUBE_CA_FILE"] = str(directory / "ca.crt")
    return env


@pytest.fixture(scope="session")
def etcd(local_cluster: ClusterInfo | None) -> Etcd:
    if local_cluster is None:
        pytest.skip("needs the local control plane's etcd (make e2e-local)")
    return Etcd(local_cluster.etcd_url)
