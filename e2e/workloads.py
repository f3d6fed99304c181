"""Workloads for the ``nodes`` tests, created and inspected with kubectl.

Every container runs the sidecar image (``sidecar-injector/sidecar:e2e``,
loaded into the cluster with the others; it has Python), so no other image
is needed on kind or on the local node:

- ``APP``: the application. An HTTP/1.1 server on $PORT (8080): ``/`` echoes
  the request (host, path, headers), ``/flaky`` answers 503 to every odd
  call, ``/slow?S`` answers after S seconds, ``POST /-/reload`` counts
  reloads, ``/state`` returns the counters, ``/file?PATH`` a file's content.
  Its first instruction prints the files named in $READ_AT_START. On SIGTERM
  it stops accepting, closes idle keep-alive connections and exits once the
  requests in flight are answered (with ``Connection: close``), as a web
  server's graceful shutdown does.
- ``CLIENT``: ``METHOD URL [COUNT]``, one connection per request, prints
  a JSON list of ``{status, headers, body}`` (header names in lower case;
  status 0 and ``error`` when the connection failed).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import yaml

from e2e.install import diagnosis
from e2e.kube import Kube, KubeError, wait_for

IMAGE = "sidecar-injector/sidecar:e2e"
PREFIX = "sidecar.example.io/"
TIMEOUT = 180.0

APP = r"""
import http.server, json, os, signal, socket, sys, threading, time
for path in filter(None, os.environ.get("READ_AT_START", "").split(",")):
    try:
        print("read-at-start", path, json.dumps(open(path).read()), flush=True)
    except OSError as exc:
        print("read-at-start", path, "ERROR", exc, flush=True)
state = {"reloads": 0, "flaky": 0}
lock, idle, stopping = threading.Lock(), set(), threading.Event()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        with lock:
            idle.add(self.connection)
    def parse_request(self):
        with lock:
            idle.discard(self.connection)
        return super().parse_request()
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        with lock:
            if not self.close_connection:
                idle.add(self.connection)
    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/flaky":
            state["flaky"] += 1
            return self.reply(503 if state["flaky"] % 2 else 200, state)
        if path == "/slow":
            print("slow request started", flush=True)
            time.sleep(float(query or 3))
            return self.reply(200, {"slow": "done"})
        if path == "/state":
            return self.reply(200, state)
        if path == "/file":
            return self.reply(200, {"content": open(query).read()})
        echo = {"host": socket.gethostname(), "path": self.path, "headers": dict(self.headers)}
        self.reply(200, echo)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/-/reload":
            state["reloads"] += 1
            print("reloaded", state["reloads"], flush=True)
        self.reply(200, state)
    def log_message(self, *args):
        pass
def stop():
    server.shutdown()
    stopping.set()
    with lock:
        for connection in idle:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
server.daemon_threads = False
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stop).start())
print("serving", flush=True)
server.serve_forever()
server.server_close()
print("stopped after the requests in flight", flush=True)
"""

CLIENT = r"""
import http.client, json, sys, urllib.parse
method, url = sys.argv[1], urllib.parse.urlsplit(sys.argv[2])
results = []
for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 1):
    connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
    try:
        connection.request(method, url.path + ("?" + url.query if url.query else ""))
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        headers = {key.lower(): value for key, value in response.getheaders()}
        results.append({"status": response.status, "headers": headers, "body": body})
    except OSError as exc:
        results.append({"status": 0, "error": repr(exc)})
    finally:
        connection.close()
print(json.dumps(results))
"""


def container(name: str = "app", program: str = APP, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", program],
        "ports": [{"containerPort": 8080}],
        **extra,
    }


def pod(
    name: str,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A pod of APP; annotations are given without the sidecar.example.io/ prefix."""
    spec.setdefault("containers", [container()])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": name, **(labels or {})},
            "annotations": {PREFIX + key: value for key, value in (annotations or {}).items()},
        },
        "spec": {"terminationGracePeriodSeconds": 30, **spec},
    }


def service(name: str, target_port: int, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"port": port, "targetPort": target_port}],
        },
    }


def kubectl(command: list[str], *args: str, stdin: str = "", timeout: float = 120) -> str:
    """Run ``kubectl ARGS``; its output, or KubeError with its error."""
    result = subprocess.run(
        [*command, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=dict(os.environ),
    )
    if result.returncode != 0:
        raise KubeError(f"kubectl {' '.join(args)}: {result.stderr.strip() or result.stdout}")
    return result.stdout


def apply(kubectl_path: str, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl([kubectl_path], "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def ready(kube: Kube, namespace: str, name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Wait until pod name is Ready; the pod. On timeout, what the namespace shows."""
    path = f"/api/v1/namespaces/{namespace}/pods/{name}"

    def is_ready() -> dict[str, Any] | None:
        body = kube.get(path).expect(200)
        conditions = body.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return body
        return None

    try:
        result: dict[str, Any] = wait_for(is_ready, timeout, f"pod {namespace}/{name} Ready", 0.1)
    except KubeError as exc:
        raise KubeError(f"{exc}\n{diagnosis(kube, namespace)}") from None
    return result


def job_complete(kube: Kube, namespace: str, name: str, timeout: float = TIMEOUT) -> None:
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"

    def complete() -> bool:
        conditions = kube.get(path).expect(200).get("status", {}).get("conditions") or []
        failed = [c for c in conditions if c["type"] == "Failed" and c["status"] == "True"]
        if failed:
            raise AssertionError(f"job {name} failed: {failed}\n{diagnosis(kube, namespace)}")
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

    try:
        wait_for(complete, timeout, f"job {namespace}/{name} Complete", 0.2)
    except KubeError as exc:
        raise KubeError(f"{exc}\n{diagnosis(kube, namespace)}") from None


def request(
    kubectl_path: str,
    namespace: str,
    pod_name: str,
    method: str,
    url: str,
    count: int = 1,
    container_name: str = "app",
) -> list[dict[str, Any]]:
    """CLIENT run in a container of pod_name: one result per request."""
    out = kubectl(
        [kubectl_path],
        "-n", namespace, "exec", pod_name, "-c", container_name, "--",
        "python", "-c", CLIENT, method, url, str(count),
    )  # fmt: skip
    results: list[dict[str, Any]] = json.loads(out)
    return results


def routed(kubectl_path: str, namespace: str, pod_name: str, url: str) -> dict[str, Any]:
    """GET url from pod_name once the Service behind it routes: a new endpoint
    reaches kube-proxy (or any Service proxy) a moment after its pod is Ready,
    and until then connections are refused. The first answer."""

    def answer() -> dict[str, Any] | None:
        (result,) = request(kubectl_path, namespace, pod_name, "GET", url)
        return result if result["status"] else None

    found: dict[str, Any] = eventually(answer, 60, f"{url} to answer from {pod_name}")
    return found


def logs(kubectl_path: str, namespace: str, pod_name: str, container_name: str = "app") -> str:
    return kubectl([kubectl_path], "-n", namespace, "logs", pod_name, "-c", container_name)


def first_output(kubectl_path: str, namespace: str, pod_name: str) -> str:
    """The app's first line of output (a Ready container may not have written it yet)."""
    out: str = eventually(
        lambda: logs(kubectl_path, namespace, pod_name), 30, f"output from {pod_name}"
    )
    return out.splitlines()[0]


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of a Prometheus metric whose labels include labels."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name = head.split("{", 1)[0]
        if metric_name != name:
            continue
        if all(f'{key}="{val}"' in head for key, val in labels.items()):
            total += float(value)
    return total


def init_ended(
    kube: Kube,
    namespace: str,
    pod_name: str,
    timeout: float,
    container: str = "sidecar-secrets-init",
) -> dict[str, Any]:
    """The ``terminated`` state of an init container, once it has ended."""
    path = f"/api/v1/namespaces/{namespace}/pods/{pod_name}"

    def ended() -> dict[str, Any] | None:
        statuses = kube.get(path).expect(200).get("status", {}).get("initContainerStatuses", [])
        for status in statuses:
            terminated = status.get("state", {}).get("terminated")
            if status["name"] == container and terminated:
                return dict(terminated)
        return None

    found: dict[str, Any] = eventually(ended, timeout, f"{container} of {pod_name} to end")
    return found


def eventually(check: Any, timeout: float, what: str) -> Any:
    """Poll check until it returns something truthy (then return it) or time runs out."""
    return wait_for(check, timeout, what, 0.2)


def gone(kube: Kube, namespace: str, name: str, timeout: float) -> float:
    """Seconds until pod name no longer exists."""
    started = time.monotonic()
    wait_for(
        lambda: kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}").status == 404,
        timeout,
        f"pod {namespace}/{name} to be gone",
        0.1,
    )
    return time.monotonic() - started
