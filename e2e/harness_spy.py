"""A second mutating webhook for reinvocation tests: a real HTTPS server on
127.0.0.1 that answers AdmissionReview v1 (the documented API) by adding one
annotation, and records what it was sent.

Registered under a configuration name that sorts after ours, so the API server
calls it after our injector; because it changes the pod, our webhook
(``reinvocationPolicy: IfNeeded``) is called again with the injected pod.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from e2e import pki

SPY_ANNOTATION = "e2e.example.io/spy"


class SpyWebhook:
    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        ca = pki.CertificateAuthority("e2e-spy-webhook-ca")
        issued = ca.issue("e2e-spy", ip_addresses=("127.0.0.1",), server=True)
        self.ca_pem = ca.cert_pem
        self._dir = tempfile.TemporaryDirectory(prefix="e2e-spy-")
        cert = pki.write(Path(self._dir.name) / "spy.crt", issued.cert_pem)
        key = pki.write(Path(self._dir.name) / "spy.key", issued.key_pem, secret=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        spy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                review = json.loads(self.rfile.read(length))
                with spy._lock:
                    spy.reviews.append(review)
                body = json.dumps(spy.answer(review)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def answer(review: dict[str, Any]) -> dict[str, Any]:
        request = review["request"]
        annotations = request["object"].get("metadata", {}).get("annotations")
        if annotations is None:
            patch = [{"op": "add", "path": "/metadata/annotations", "value": {SPY_ANNOTATION: "1"}}]
        elif SPY_ANNOTATION in annotations:
            patch = []
        else:
            key = SPY_ANNOTATION.replace("~", "~0").replace("/", "~1")
            patch = [{"op": "add", "path": f"/metadata/annotations/{key}", "value": "1"}]
        response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
        if patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        }

    def configuration(self, name: str, namespace: str) -> dict[str, Any]:
        """A MutatingWebhookConfiguration sending pods of one namespace here."""
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "spy.e2e.example.io",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "timeoutSeconds": 5,
                    "failurePolicy": "Fail",
                    "reinvocationPolicy": "Never",
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ],
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{self.port}/mutate",
                        "caBundle": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
        }

    def __enter__(self) -> SpyWebhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._dir.cleanup()
