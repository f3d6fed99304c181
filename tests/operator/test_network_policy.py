"""manifests/components/network-policy: the API server alone reaches the
webhook port, a labelled monitoring namespace the metrics port, meshed pods
the certificate port; nothing else is open. Built as README's overlay
(tests/operator/overlays/network-policy) and validated strictly. Whether a
CNI enforces it is the cluster's part; e2e/test_network_policy.py shows the
API server accepts the policy and refuses the unset placeholder."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = Path(__file__).resolve().parent / "overlays" / "network-policy"
COMPONENT = ROOT / "manifests" / "components" / "network-policy" / "networkpolicy.yaml"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl not installed")


def build() -> list[dict[str, Any]]:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(OVERLAY)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_the_overlay_validates() -> None:
    for doc in build():
        if doc["kind"] in ("SidecarProfile",):
            continue
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_only_the_api_server_reaches_the_webhook() -> None:
    docs = build()
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    (deployment,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "sidecar-injector"
    ]
    pod = deployment["spec"]["template"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    rules = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert all(len(rule["ports"]) == 1 for rule in policy["spec"]["ingress"])
    assert set(rules) == set(ports.values())  # every port has a rule, no rule opens more
    assert rules[ports["https"]] == [{"ipBlock": {"cidr": "10.0.0.10/32"}}]
    assert rules[ports["metrics"]] == [
        {"namespaceSelector": {"matchLabels": {"sidecar.example.io/monitoring": "true"}}}
    ]
    assert rules[ports["mesh"]] == [{"namespaceSelector": {}}]
    args = pod["spec"]["containers"][0]["args"]
    assert f"--metrics-listen=0.0.0.0:{ports['metrics']}" in [a.split()[0] for a in args]


def test_the_component_alone_does_not_apply() -> None:
    """Unset, the CIDR is a placeholder the API server refuses, never a range that
    would silently cut the API server off."""
    policy = yaml.safe_load(COMPONENT.read_text())
    cidr = policy["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"]
    with pytest.raises(ValueError):
        ipaddress.ip_network(cidr)
