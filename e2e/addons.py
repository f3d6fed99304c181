"""Cluster DNS for the e2e node: CoreDNS (built by e2e.node_build) as kind runs it.

A Deployment in kube-system behind the Service ``kube-dns`` at 10.0.0.10,
answering for ``cluster.local`` from the API (Services, endpoints, pods),
with the RBAC its ``kubernetes`` plugin needs. It listens on 1053 so that it
runs as a non-root user without capabilities; the Service maps 53 to it.
There is no upstream resolver inside the sandbox, so other names fail.
"""

from __future__ import annotations

from typing import Any

from e2e.cluster import Api, ClusterError, ClusterInfo
from e2e.node_config import CLUSTER_DOMAIN, COREDNS_IMAGE, DNS_IP

NAMESPACE = "kube-system"
DNS_DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/coredns"
COREFILE = f""".:1053 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    loadbalance
}}
"""
LABELS = {"k8s-app": "kube-dns"}


def _rbac() -> list[tuple[str, dict[str, Any]]]:
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    rules = [
        {
            "apiGroups": [""],
            "resources": ["endpoints", "services", "pods", "namespaces"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
    ]
    binding = {
        "metadata": {"name": "system:coredns"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:coredns",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE}],
    }
    return [
        (f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", {"metadata": {"name": "coredns"}}),
        (f"{rbac}/clusterroles", {"metadata": {"name": "system:coredns"}, "rules": rules}),
        (f"{rbac}/clusterrolebindings", binding),
    ]


def _container() -> dict[str, Any]:
    http = [("health", 8080, "/health"), ("ready", 8181, "/ready")]
    return {
        "name": "coredns",
        "image": COREDNS_IMAGE,
        "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": 1053, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 1053, "protocol": "TCP"},
            *({"name": name, "containerPort": port} for name, port, _ in http),
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"memory": "128Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }


def _deployment() -> dict[str, Any]:
    return {
        "metadata": {"name": "coredns", "labels": LABELS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "serviceAccountName": "coredns",
                    "dnsPolicy": "Default",
                    "priorityClassName": "system-cluster-critical",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [_container()],
                    "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                },
            },
        },
    }


def _service() -> dict[str, Any]:
    return {
        "metadata": {"name": "kube-dns", "labels": LABELS},
        "spec": {
            "clusterIP": DNS_IP,
            "selector": LABELS,
            "ports": [
                {"name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"},
            ],
        },
    }


def install_dns(info: ClusterInfo) -> None:
    """Create CoreDNS's objects (the cluster is fresh: each must be new)."""
    api = Api(info)
    namespaced = f"/api/v1/namespaces/{NAMESPACE}"
    objects = [
        *_rbac(),
        (
            f"{namespaced}/configmaps",
            {"metadata": {"name": "coredns"}, "data": {"Corefile": COREFILE}},
        ),
        (f"{namespaced}/services", _service()),
        (f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", _deployment()),
    ]
    for path, body in objects:
        status, answer = api.request("POST", path, body)
        if status not in (201, 409):
            raise ClusterError(
                f"creating {path}/{body['metadata']['name']}: HTTP {status}: "
                f"{answer.get('message')}"
            )
