"""Sidecar lifecycles under a real kubelet: Jobs complete, classic mode waits for Envoy.

Native sidecars (initContainers with restartPolicy Always): the kubelet
stops the proxy once the app exits, so a Job completes. Classic sidecars:
the proxy is the first container and its postStart hook holds the app until
Envoy is ready; a Job's app ends the proxy with POST /quitquitquit.
"""

from __future__ import annotations

from typing import Any

import pytest

from e2e import workloads
from e2e.conftest import Injector
from e2e.kube import Kube

pytestmark = pytest.mark.nodes

READY_AT_START = r"""
import urllib.request
ready = urllib.request.urlopen("http://127.0.0.1:15020/ready", timeout=5)
print("proxy-ready-at-start", ready.status, flush=True)
"""
JOB = r"""
import os, sys, urllib.request
answer = urllib.request.urlopen("http://127.0.0.1:15001/job", timeout=30)
print("through the proxy:", answer.status, flush=True)
if os.environ.get("QUIT"):
    quit = urllib.request.Request("http://127.0.0.1:15020/quitquitquit", method="POST")
    urllib.request.urlopen(quit, timeout=30)
    print("asked the proxy to quit", flush=True)
"""


def _job(name: str, annotations: dict[str, str], env: list[dict[str, str]]) -> dict[str, Any]:
    template = workloads.pod(
        name,
        annotations,
        containers=[workloads.container(program=JOB, env=env)],
        restartPolicy="Never",
    )
    del template["apiVersion"], template["kind"]
    del template["metadata"]["name"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": template},
    }


@pytest.fixture
def upstream(kube: Kube, kubectl: str, namespace: str, injector: Injector) -> str:
    workloads.apply(
        kubectl,
        namespace,
        workloads.pod("echo", {"inject": "false"}),
        workloads.service("echo", 8080),
    )
    workloads.ready(kube, namespace, "echo")
    url = f"http://echo.{namespace}.svc:80"
    workloads.routed(kubectl, namespace, "echo", url + "/")  # through its own Service
    return url


def test_a_job_with_native_sidecars_completes(
    kube: Kube, kubectl: str, namespace: str, upstream: str
) -> None:
    job = _job("native", {"inject": "true", "proxy-upstream": upstream}, [])
    workloads.apply(kubectl, namespace, job)
    workloads.job_complete(kube, namespace, "native")
    out = workloads.kubectl([kubectl], "-n", namespace, "logs", "job/native", "-c", "app")
    assert "through the proxy: 200" in out


def test_classic_sidecars_hold_the_app_until_envoy_is_ready(
    kube: Kube, kubectl: str, namespace: str, injector: Injector
) -> None:
    pod = workloads.pod(
        "classic",
        {"inject": "true", "native-sidecars": "false", "proxy-inbound-port": "8080"},
        containers=[workloads.container(program=READY_AT_START + workloads.APP)],
    )
    workloads.apply(kubectl, namespace, pod)
    stored = workloads.ready(kube, namespace, "classic")
    assert stored["spec"]["containers"][0]["name"] == "sidecar-proxy"
    assert workloads.first_output(kubectl, namespace, "classic") == "proxy-ready-at-start 200"


def test_a_classic_job_completes_through_quitquitquit(
    kube: Kube, kubectl: str, namespace: str, upstream: str
) -> None:
    job = _job(
        "classic",
        {"inject": "true", "native-sidecars": "false", "proxy-upstream": upstream},
        [{"name": "QUIT", "value": "1"}],
    )
    workloads.apply(kubectl, namespace, job)
    workloads.job_complete(kube, namespace, "classic")
    out = workloads.kubectl([kubectl], "-n", namespace, "logs", "job/classic", "-c", "app")
    assert "through the proxy: 200" in out
    assert "asked the proxy to quit" in out
