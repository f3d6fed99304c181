"""The AdmissionReviews the webhook bench sends.

(a) ``all_roles``: a ~17 KB pod (three app containers with env, probes,
resources and mounts, the shape of a typical Deployment's pod) whose
annotations ask for the proxy, secrets and config roles; (b)
``not_annotated``: the same pod without our annotations, in a namespace
without the injection label (the fast path: admitted unchanged).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

P = "sidecar.example.io/"
NAMESPACE = "shop"
TARGET_BYTES = 17 * 1024

# What `sidecar-injector serve --config` reads: native sidecars (1.30), a Vault default.
SERVE_CONFIG: dict[str, Any] = {
    "clusterVersion": "1.30",
    "injectorNamespace": "sidecar-injector",
    "profiles": {
        "default": {
            "image": "registry.example.io/sidecar:0.1.0",
            "vault": {"address": "https://vault.vault.svc:8200", "role": "shop"},
        }
    },
}

ALL_ROLES: dict[str, str] = {
    P + "inject": "true",
    P + "proxy": "true",
    P + "proxy-upstream": "http://payments.shop.svc:8080",
    P + "proxy-inbound-port": "8080",
    P + "proxy-timeout": "5s",
    P + "proxy-retries": "3",
    P + "secret-db": "database/creds/shop",
    P + "secret-api": "secret/data/shop/api",
    P + "secrets-role": "shop",
    P + "config-source": "configmap:shop-config",
    P + "config-path": "/etc/shop",
    P + "reload": "http://127.0.0.1:8080/-/reload",
}


def _container(index: int, env_count: int) -> dict[str, Any]:
    port = 8080 + index
    return {
        "name": f"app-{index}",
        "image": f"registry.example.io/shop/app-{index}:1.42.{index}",
        "imagePullPolicy": "IfNotPresent",
        "args": ["--listen", f":{port}", "--log-format", "json"],
        "ports": [
            {"name": f"http-{index}", "containerPort": port, "protocol": "TCP"},
            {"name": f"metrics-{index}", "containerPort": 9090 + index, "protocol": "TCP"},
        ],
        "env": [
            {"name": f"SHOP_SETTING_{n:03d}", "value": f"value-{index}-{n:03d}-" + "x" * 24}
            for n in range(env_count)
        ]
        + [
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            }
        ],
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": port, "scheme": "HTTP"},
            "periodSeconds": 5,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "data", "mountPath": f"/var/lib/shop/{index}"},
            {
                "name": "kube-api-access-abcde",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def pod(annotated: bool, env_count: int = 40) -> dict[str, Any]:
    annotations = {"kubectl.kubernetes.io/restartedAt": "2026-11-20T10:00:00Z"}
    if annotated:
        annotations.update(ALL_ROLES)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "shop-7d9c6b5f4-",
            "namespace": NAMESPACE,
            "labels": {"app": "shop", "tier": "backend", "pod-template-hash": "7d9c6b5f4"},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "shop-7d9c6b5f4",
                    "uid": "5f0c1c1e-6a59-4c1e-9d0e-2f6f1f0e8b1a",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": "shop",
            "containers": [_container(i, env_count) for i in range(3)],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {
                    "name": "kube-api-access-abcde",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                        ],
                    },
                },
            ],
            "securityContext": {"fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}},
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 45,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
        },
    }


def review(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": NAMESPACE,
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def review_bytes(annotated: bool) -> bytes:
    """The review, sized to about ``TARGET_BYTES`` by the number of env variables."""
    body = b""
    for env_count in range(10, 200):
        body = json.dumps(review(pod(annotated, env_count))).encode()
        if len(body) >= TARGET_BYTES:
            break
    return body
