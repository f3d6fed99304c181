"""The agents' certificate endpoint: ``POST /v1/certificates`` and ``/v1/trust-reports``.

A FastAPI app (``create_app``) served on its own port (15012) by its own
uvicorn server with the webhook's live TLS context (``serve``), so the
webhook's limits and the agents' traffic never share a listener. The
protocol is ``sidecar.identity.protocol``'s docstring.

Per request: read at most 64 KiB; the bearer token goes to the ``Reviewer``
(TokenReview + live pod); the CSR is checked and signed by the current active
root (``TrustView``); the trust bundle and its generation come back with the
certificate, and the roots the agent reported go to the ``AckLedger`` (the
operator switches issuance to a new root only once every agent trusts it).
A refusal is JSON ``{"reason", "message"}`` with 400/401/403 (or 503 when
the API server or the root is not available: the agent retries), logged
with the pod and the reason; a token never appears in a log or an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram

from contract.spiffe import SpiffeId, is_namespace
from injector.admission.tls import ServingTLS
from injector.mesh import signer
from injector.mesh.signer import IssuancePolicy, RequestDenied
from injector.mesh.trust import TrustState
from injector.operator.identity_review import Caller, Reviewer

log = logging.getLogger("injector.mesh")
MAX_BODY = 64 * 1024
MAX_LEDGER = 200_000
_POD = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class TrustView:
    """The trust state every replica signs with (the keeper replaces it)."""

    def __init__(self, state: TrustState | None = None) -> None:
        self.state = state

    def current(self) -> TrustState:
        state = self.state
        if state is None:
            raise RequestDenied(
                "NoRoot", "the operator has not loaded the mesh root yet; retry shortly", 503
            )
        return state


@dataclass(frozen=True)
class Report:
    pod: str  # namespace/name
    roots: frozenset[str]
    at: float  # last heard from
    issued: float  # last certificate issued (0: none by this replica)


class AckLedger:
    """The roots each pod last said it trusts and when it last got a certificate,
    by pod UID (bounded: the oldest are dropped)."""

    def __init__(self, limit: int = MAX_LEDGER) -> None:
        self.limit = limit
        self.reports: OrderedDict[str, Report] = OrderedDict()

    def record(self, caller: Caller, roots: frozenset[str], *, issued: bool) -> None:
        previous = self.reports.pop(caller.pod_uid, None)
        now = time.time()
        last_issue = now if issued else (previous.issued if previous else 0.0)
        self.reports[caller.pod_uid] = Report(caller.key, roots, now, last_issue)
        while len(self.reports) > self.limit:
            self.reports.popitem(last=False)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "sidecar_injector_mesh_certificates",
            "Certificate requests, by outcome (issued or the refusal reason)",
            ("outcome",),
            registry=registry,
        )
        self.latency = Histogram(
            "sidecar_injector_mesh_issue_duration_seconds",
            "Request received to certificate sent (TokenReview, pod lookup, signing)",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.reports = Counter(
            "sidecar_injector_mesh_trust_reports", "Trust reports received", registry=registry
        )


def _refusal(exc: RequestDenied) -> Response:
    body = json.dumps({"reason": exc.reason, "message": str(exc)})
    return Response(body, status_code=exc.status, media_type="application/json")


async def _read(request: Request) -> tuple[str, dict[str, Any], str, str]:
    """(token, document, namespace, pod) of a request, checked for shape and size."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestDenied(
            "TokenInvalid", "no bearer token: send the projected identity token", 401
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise RequestDenied("BadRequest", f"the body exceeds {MAX_BODY} bytes", 413)
    try:
        document = json.loads(body)
    except ValueError:
        raise RequestDenied("BadRequest", "the body is not JSON", 400) from None
    pod = document.get("pod") if isinstance(document, dict) else None
    namespace = pod.get("namespace") if isinstance(pod, dict) else None
    name = pod.get("name") if isinstance(pod, dict) else None
    if not isinstance(namespace, str) or not is_namespace(namespace):
        raise RequestDenied("BadRequest", "pod.namespace: expected a namespace name", 400)
    if not isinstance(name, str) or len(name) > 253 or not _POD.match(name):
        raise RequestDenied("BadRequest", "pod.name: expected a pod name", 400)
    return token.strip(), document, namespace, name


def _roots(document: dict[str, Any]) -> frozenset[str]:
    roots = document.get("trustedRoots") or []
    if not isinstance(roots, list) or len(roots) > 16:
        raise RequestDenied("BadRequest", "trustedRoots: expected up to 16 fingerprints", 400)
    if not all(isinstance(r, str) and _FINGERPRINT.match(r) for r in roots):
        raise RequestDenied("BadRequest", "trustedRoots: expected SHA-256 hex fingerprints", 400)
    return frozenset(roots)


def _issued(issued: signer.Issued, state: TrustState) -> dict[str, Any]:
    return {
        "identity": issued.identity.uri,
        "certificateChain": issued.chain_pem.decode(),
        "serial": issued.serial_hex,
        "notBefore": issued.not_before.isoformat(),
        "notAfter": issued.not_after.isoformat(),
        "refreshAt": issued.refresh_at.isoformat(),
        "trustBundle": state.bundle_pem.decode(),
        "trustGeneration": state.generation,
    }


def _peer(request: Request) -> str:
    client = request.client
    return f"from {client.host}" if client is not None else "from an unknown address"


@dataclass
class Endpoint:
    """The handlers, with what they use."""

    reviewer: Reviewer
    trust: TrustView
    ledger: AckLedger
    policy: IssuancePolicy
    metrics: Metrics

    async def _sign(self, request: Request) -> tuple[signer.Issued, TrustState]:
        token, document, namespace, name = await _read(request)
        caller = await self.reviewer.review(token, namespace, name)
        state = self.trust.current()
        identity = SpiffeId.of(caller.trust_domain, caller.namespace, caller.service_account)
        csr = signer.parse_csr(str(document.get("csr") or "").encode())
        key = signer.check_csr(csr, identity)
        issued = signer.issue(state.active.authority, key, identity, self.policy)
        self.ledger.record(caller, _roots(document), issued=True)
        return issued, state

    async def certificates(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            issued, state = await self._sign(request)
        except RequestDenied as exc:
            self.metrics.requests.labels(exc.reason).inc()
            log.warning("mesh: certificate refused (%s): %s: %s", _peer(request), exc.reason, exc)
            return _refusal(exc)
        except (signer.MeshError, ValueError) as exc:
            self.metrics.requests.labels("SignerError").inc()
            log.error("mesh: cannot sign (%s): %s", _peer(request), exc)
            return _refusal(RequestDenied("SignerError", str(exc), 503))
        self.metrics.requests.labels("issued").inc()
        self.metrics.latency.observe(time.perf_counter() - started)
        log.info(
            "mesh: issued %s (serial %s, until %s)",
            issued.identity.uri,
            issued.serial_hex,
            issued.not_after.isoformat(),
        )
        return Response(json.dumps(_issued(issued, state)), media_type="application/json")

    async def trust_reports(self, request: Request) -> Response:
        try:
            token, document, namespace, name = await _read(request)
            caller = await self.reviewer.review(token, namespace, name)
            self.ledger.record(caller, _roots(document), issued=False)
        except RequestDenied as exc:
            log.warning("mesh: trust report refused (%s): %s: %s", _peer(request), exc.reason, exc)
            return _refusal(exc)
        self.metrics.reports.inc()
        return Response(status_code=204)


def create_app(
    reviewer: Reviewer,
    trust: TrustView,
    ledger: AckLedger,
    policy: IssuancePolicy,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    app = FastAPI(
        title="sidecar-injector mesh signer", docs_url=None, redoc_url=None, openapi_url=None
    )
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    endpoint = Endpoint(reviewer, trust, ledger, policy, metrics)
    app.add_api_route("/v1/certificates", endpoint.certificates, methods=["POST"])
    app.add_api_route("/v1/trust-reports", endpoint.trust_reports, methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    return app


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the webhook's server (one per process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(app: FastAPI, tls: ServingTLS, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve ``app`` on the bound ``sock`` over ``tls`` (the webhook's live
    context) until ``stop`` (or cancellation); requests in flight get 5 s."""
    config = uvicorn.Config(
        app,
        ssl_context_factory=tls.uvicorn_factory(),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        limit_concurrency=512,
        timeout_keep_alive=30,
    )
    server = _Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(task, 10)
    failure = task.exception() if task.done() and not task.cancelled() else None
    if failure is not None:
        log.error(
            "mesh: the certificate endpoint on %s stopped: %s; agents cannot get certificates",
            sock.getsockname(),
            failure,
        )
        raise failure
