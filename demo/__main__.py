"""``make demo``: start ``sidecar-injector serve`` on 127.0.0.1 with a
self-signed certificate, send it real AdmissionReviews over verified TLS, show
what it answers, and check each answer against the pure ``render``.

Needs no cluster. Exits 0 and prints PASS when every answer is as expected.
The server is stopped and its temporary directory (CA, config, log) removed at
the end; ``--keep`` leaves both so the webhook can be tried by hand.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from injector.core.model import NamespaceInfo
from injector.core.render import render
from injector.core.settings import DEFAULT_MESH_SIGNER
from injector.core.specs import settings_from_spec

P = "sidecar.example.io/"
CONFIG: dict[str, Any] = {
    "clusterVersion": "1.30",
    "profiles": {
        "default": {
            "image": "registry.example.io/sidecar:0.1.0",
            "vault": {"address": "https://vault.vault.svc:8200", "role": "shop"},
        }
    },
}


def pod(name: str, annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
        "spec": {
            "containers": [
                {"name": "app", "image": "example/shop:1.4", "ports": [{"containerPort": 8080}]}
            ],
            **spec,
        },
    }


SCENARIOS: list[tuple[str, dict[str, Any], str]] = [
    (
        "all three roles (native sidecars, Kubernetes 1.30)",
        pod(
            "shop",
            {
                P + "inject": "true",
                P + "proxy-upstream": "http://payments.shop:8080",
                P + "proxy-inbound-port": "8080",
                P + "proxy-timeout": "5s",
                P + "secret-db": "database/creds/shop",
                P + "config-source": "configmap:shop-config",
                P + "reload": "http://127.0.0.1:8080/-/reload",
            },
        ),
        "injected",
    ),
    (
        "a Job's pod with secrets (native sidecars stop when the app exits)",
        {
            **pod("report", {P + "inject": "true", P + "secret-db": "database/creds/report"}),
            "metadata": {
                "name": "report-x7",
                "namespace": "shop",
                "annotations": {P + "inject": "true", P + "secret-db": "database/creds/report"},
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": "report", "uid": "1"}
                ],
            },
        },
        "injected",
    ),
    (
        "a typo under our prefix: injected, with a warning",
        pod("typo", {P + "inject": "true", P + "proxy-upstrem": "http://x:80"}),
        "injected",
    ),
    ("a pod without our annotations: untouched", pod("plain", {}), "untouched"),
    (
        "an invalid value: denied with a message",
        pod("bad", {P + "inject": "true", P + "proxy-rate-limit": "lots"}),
        "denied",
    ),
]


def review(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": "shop",
            "userInfo": {"username": "demo"},
            "object": obj,
            "dryRun": False,
        },
    }


def post(url: str, body: dict[str, Any], context: ssl.SSLContext) -> dict[str, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def wait_ready(log: Path, ca: Path, proc: subprocess.Popen[bytes]) -> tuple[str, ssl.SSLContext]:
    """The server's URL (it listens on an ephemeral port and prints it) and a
    TLS context that trusts its generated CA, once /readyz answers 200."""
    deadline = time.monotonic() + 30
    url = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"demo: sidecar-injector serve exited with {proc.returncode}:\n{log.read_text()}"
            )
        if not url:
            found = re.search(r"serving (https://127\.0\.0\.1:\d+)/mutate", log.read_text())
            url = found[1] if found else ""
        if url and ca.exists():
            context = ssl.create_default_context(cafile=str(ca))
            try:
                with urllib.request.urlopen(url + "/readyz", context=context, timeout=2) as r:
                    if r.status == 200:
                        return url, context
            except (urllib.error.URLError, ConnectionError, ssl.SSLError):
                pass
        time.sleep(0.1)
    raise SystemExit(f"demo: the webhook did not become ready within 30s:\n{log.read_text()}")


def show(title: str, obj: dict[str, Any], answer: dict[str, Any]) -> Any:
    print(f"\n=== {title}")
    print(f"    allowed: {answer['allowed']}")
    for warning in answer.get("warnings", []):
        print(f"    warning: {warning}")
    if "status" in answer:
        print(f"    message: {answer['status']['message']}")
    if "patch" not in answer:
        print("    patch:   none")
        return obj
    ops = json.loads(base64.b64decode(answer["patch"]))
    print(f"    patch:   {len(ops)} JSON Patch operations")
    for op in ops:
        print(f"      {op['op']:<7} {op['path']}")
    result = jsonpatch.apply_patch(obj, ops, in_place=False)
    spec = result["spec"]
    for where in ("initContainers", "containers"):
        for c in spec.get(where, []):
            extra = " (native sidecar)" if c.get("restartPolicy") == "Always" else ""
            command = " ".join(c.get("command", [])) or "-"
            print(f"      {where:<15} {c['name']:<22} {command}{extra}")
    status = result["metadata"]["annotations"][P + "status"]
    print(f"      status annotation: {status}")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Start sidecar-injector serve on 127.0.0.1 with a self-signed certificate, "
        "send it five AdmissionReviews over verified TLS, show each answer and check it "
        "against render(). Needs no cluster. Exits 0 and prints PASS when every answer is "
        "as expected.",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Leave the webhook running afterwards and print how to call it with curl and how "
        "to stop it (by default it is stopped and its temporary directory removed).",
    )
    return parser.parse_args(argv)


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """``sidecar-injector serve`` in its own session (so ``--keep`` outlives us)."""
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    command = [
        sys.executable, "-m", "injector.cli", "serve", "--listen", "127.0.0.1:0",
        "--ca-out", str(tmp / "ca.crt"), "--config", str(config),
        # as installed (the operator's mesh endpoint): meshed pods get mTLS
        "--mesh-signer", DEFAULT_MESH_SIGNER,
    ]  # fmt: skip
    print("demo: starting", " ".join(["sidecar-injector", *command[3:]]))
    log_path = tmp / "serve.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return proc, log_path


def run_scenarios(url: str, context: ssl.SSLContext) -> list[str]:
    """Send every scenario; what went other than expected."""
    failures: list[str] = []
    settings = settings_from_spec(CONFIG)
    for title, obj, expected in SCENARIOS:
        answer = post(url + "/mutate", review(obj), context)["response"]
        result = show(title, obj, answer)
        if expected == "denied":
            if answer["allowed"] or "proxy-rate-limit" not in answer["status"]["message"]:
                failures.append(f"{title}: expected a denial naming proxy-rate-limit")
            continue
        if not answer["allowed"]:
            failures.append(f"{title}: denied: {answer.get('status')}")
            continue
        want = render(obj, NamespaceInfo("shop"), settings).pod
        if result != want:
            failures.append(f"{title}: the patched pod differs from render()")
        if expected == "untouched" and "patch" in answer:
            failures.append(f"{title}: expected no patch")
    with urllib.request.urlopen(url + "/metrics", context=context, timeout=5) as response:
        metrics = response.read().decode()
    print("\ndemo: metrics")
    for line in metrics.splitlines():
        if line.startswith(("sidecar_injector_reviews_total", "sidecar_injector_injections_t")):
            print("     ", line)
    return failures


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="sidecar-injector-demo-"))
    ca = tmp / "ca.crt"
    proc, log_path = start_server(tmp)
    failures: list[str] = []
    keep = False
    try:
        url, context = wait_ready(log_path, ca, proc)
        print(f"demo: {url} is ready; TLS verified against the generated CA {ca}")
        failures = run_scenarios(url, context)
        keep = args.keep and not failures
    finally:
        if not keep:
            stop(proc)
            if failures:
                print(f"\ndemo: the server's log ({log_path}):\n{log_path.read_text()}")
            shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("\nFAIL")
        for failure in failures:
            print("  -", failure)
        return 1
    print(f"\nPASS: {len(SCENARIOS)} AdmissionReviews answered over TLS as render() predicts")
    if keep:
        print(f"\ndemo: the webhook keeps running (pid {proc.pid}, log {log_path}); try:")
        print(f"  curl --cacert {ca} {url}/healthz")
        print(f"  curl --cacert {ca} {url}/metrics")
        print(f"stop it with: kill {proc.pid} && rm -r {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
