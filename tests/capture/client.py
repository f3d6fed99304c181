"""An app that knows nothing of the proxy, run as a process in the pod namespace:

    python -m tests.capture.client http://10.251.0.1:8081/echo tcp://10.251.0.1:9000/hello

Each argument is one call on a fresh connection; one JSON line per call on
stdout: ``{"target", "status", "body"}`` (HTTP: urllib, which honours
``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` like most clients; ``https``
URLs are verified against ``$CLIENT_CA``), ``{"target", "echo"}`` (``tcp://``:
send the path, percent-decoded, read the answer; ``tcpfin://``: the same, but
half-close right after sending and read until the server closes), or
``{"target", "error"}``.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

TIMEOUT = 15.0


def call(target: str) -> dict[str, Any]:
    parts = urlsplit(target)
    try:
        if parts.scheme in ("tcp", "tcpfin"):
            payload = unquote_to_bytes(parts.path.lstrip("/"))
            # tcpfin: until the server closes; tcp: until the echo is complete.
            wanted = sys.maxsize if parts.scheme == "tcpfin" else len(payload)
            with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as conn:
                conn.sendall(payload)
                if parts.scheme == "tcpfin":
                    conn.shutdown(socket.SHUT_WR)
                received = b""
                while len(received) < wanted and (chunk := conn.recv(65536)):
                    received += chunk
            return {"target": target, "echo": received.decode("latin-1")}
        context = ssl.create_default_context(cafile=os.environ.get("CLIENT_CA"))
        try:
            with urllib.request.urlopen(target, timeout=TIMEOUT, context=context) as response:
                return {
                    "target": target,
                    "status": response.status,
                    "body": response.read().decode(),
                }
        except urllib.error.HTTPError as exc:
            return {"target": target, "status": exc.code, "body": exc.read().decode()}
    except (OSError, ValueError) as exc:
        return {"target": target, "error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps(call(arg)), flush=True)
