"""The NetworkPolicy of manifests/components/network-policy against the real API
server: with the CIDR of the API server's own endpoints (the `kubernetes`
Service's EndpointSlice, as README says to look it up; the address clients
use where there is none) it is accepted; with
the placeholder left in, applying fails loudly. (Enforcement needs a CNI that
implements NetworkPolicy; the local control plane has none.)"""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from e2e.kube import Kube

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "manifests" / "components" / "network-policy" / "networkpolicy.yaml"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"


def api_server_cidrs(kube: Kube) -> list[str]:
    found = kube.request(
        "GET", SLICES, query={"labelSelector": "kubernetes.io/service-name=kubernetes"}
    ).expect(200)
    addresses = [
        address
        for item in found["items"]
        for endpoint in item.get("endpoints", [])
        for address in endpoint.get("addresses", [])
    ]
    if not addresses:  # the local control plane runs no endpoint reconciler
        addresses = [str(urlsplit(kube.server).hostname)]
    return [str(ipaddress.ip_network(address)) for address in addresses]


def policy_in(namespace: str, cidr: str) -> dict[str, Any]:
    policy = copy.deepcopy(yaml.safe_load(POLICY.read_text()))
    policy["metadata"]["namespace"] = namespace
    policy["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] = cidr
    return policy


def test_the_policy_with_the_api_servers_address_is_accepted(kube: Kube, namespace: str) -> None:
    path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
    for cidr in api_server_cidrs(kube):
        created = kube.create(path, policy_in(namespace, cidr), dry_run=True)
        assert created.status == 201, created.message
        assert created.body["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] == cidr


def test_the_placeholder_is_refused(kube: Kube, namespace: str) -> None:
    path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
    placeholder = yaml.safe_load(POLICY.read_text())["spec"]["ingress"][0]["from"][0]
    refused = kube.create(path, policy_in(namespace, placeholder["ipBlock"]["cidr"]), dry_run=True)
    assert refused.status == 422, refused.message
    assert "cidr" in refused.message.lower()
