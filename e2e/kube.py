"""A small JSON client for the e2e suite, on the ``kubernetes`` package's
kubeconfig loader (client certificates, tokens and exec plugins all work, so
the suite runs against kind, a cloud cluster or the local control plane).

Requests are raw REST calls so tests see exactly what the API server answered:
status, body and the ``Warning`` headers admission webhooks produce.
"""

from __future__ import annotations

import json
import re
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from kubernetes import config as kube_config
from kubernetes.client import Configuration

T = TypeVar("T")
_WARNING = re.compile(r'\d{3} \S+ "((?:[^"\\]|\\.)*)"')


class KubeError(AssertionError):
    """An API call did not answer what the test needed; carries status and message."""


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))

    def expect(self, *statuses: int) -> dict[str, Any]:
        if self.status not in statuses:
            raise KubeError(f"expected HTTP {statuses}, got {self.status}: {self.message}")
        return self.body


def parse_warnings(values: list[str]) -> list[str]:
    """RFC 7234 ``Warning: 299 - "text"`` headers (possibly comma-joined) -> texts."""
    found: list[str] = []
    for value in values:
        found += [m.group(1).replace('\\"', '"') for m in _WARNING.finditer(value)]
    return found


def wait_for(
    check: Callable[[], T | bool | None], timeout: float, what: str, interval: float = 0.1
) -> T:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value  # type: ignore[return-value]
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise KubeError(f"timed out after {timeout}s waiting for {what}; last error: {last!r}")
        time.sleep(interval)


class Kube:
    def __init__(self, kubeconfig: str | None = None) -> None:
        self.configuration = Configuration()
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=self.configuration
        )
        cfg = self.configuration
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
        if not cfg.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file or None)
        self.http = httpx.Client(base_url=str(cfg.host), verify=context, timeout=30)

    @property
    def server(self) -> str:
        return str(self.configuration.host)

    def close(self) -> None:
        self.http.close()

    def _auth(self) -> dict[str, str]:
        # Calls the refresh hook, so exec-plugin and OIDC tokens stay fresh.
        token = self.configuration.get_api_key_with_prefix("authorization")
        return {"Authorization": token} if token else {}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Response:
        headers = {"Accept": "application/json", **self._auth()}
        content = None
        if body is not None:
            headers["Content-Type"] = content_type
            content = json.dumps(body).encode()
        response = self.http.request(
            method, path, params=query, headers=headers, content=content, timeout=timeout
        )
        try:
            parsed = response.json() if response.content else {}
        except ValueError:
            parsed = {"message": response.text}
        return Response(
            response.status_code, parsed, parse_warnings(response.headers.get_list("Warning"))
        )

    def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 5
    ) -> tuple[int, list[dict[str, Any]]]:
        """A watch from resource_version, read until the server ends it: status, events."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
        }
        with self.http.stream(
            "GET", path, params=query, headers=self._auth(), timeout=timeout_seconds + 10
        ) as response:
            lines = [line for line in response.iter_lines() if line.strip()]
        return response.status_code, [json.loads(line) for line in lines]

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def create(self, path: str, obj: dict[str, Any], *, dry_run: bool = False) -> Response:
        return self.request("POST", path, obj, query={"dryRun": "All"} if dry_run else None)

    def delete(self, path: str) -> Response:
        return self.request("DELETE", path)

    def apply(self, path: str, obj: dict[str, Any], manager: str = "sidecar-e2e") -> Response:
        """Server-side apply (PATCH application/apply-patch+yaml; JSON is YAML)."""
        return self.request(
            "PATCH",
            path,
            obj,
            query={"fieldManager": manager, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    # Namespaces: a fresh one per test (deleted ones stay Terminating without
    # a controller-manager). The `default` ServiceAccount is created here when
    # no controller does it (the ServiceAccount admission plugin needs it).
    def create_namespace(self, prefix: str = "e2e", labels: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.create(
            "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels or {}}}
        ).expect(201)
        sa_path = f"/api/v1/namespaces/{name}/serviceaccounts"
        created = self.create(sa_path, {"metadata": {"name": "default"}})
        if created.status not in (201, 409):
            created.expect(201)
        return name

    def delete_namespace(self, name: str) -> None:
        self.delete(f"/api/v1/namespaces/{name}")

    def has_nodes(self) -> bool:
        nodes = self.get("/api/v1/nodes").expect(200)
        return any(
            condition.get("type") == "Ready" and condition.get("status") == "True"
            for node in nodes.get("items", [])
            for condition in node.get("status", {}).get("conditions", [])
        )
