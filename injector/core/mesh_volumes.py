"""What a meshed proxy container gets besides its variables (docs/runtime.md).

* ``sidecar-identity-token``: a projected service-account token for the
  operator's endpoint only (audience ``sidecar.example.io/identity``, 10
  minutes: the kubelet renews it at 80%), mounted in the proxy alone;
* ``sidecar-mesh-trust``: ConfigMap ``sidecar-mesh-trust`` (roots, their
  generation, the endpoint's CA), required: the kubelet starts the pod's
  containers once the operator has published it in the namespace (a few
  seconds in a new namespace; "configmap not found" in the pod's events
  meanwhile). Optional, the pod would start without it and the kubelet add it
  only at its next periodic sync, a minute or more later: longer than a
  classic proxy's postStart wait (60 s);
* issuance ``podCertificate``: ``sidecar-pod-credentials``, the kubelet's
  Pod Certificate (ECDSA P-256 key + chain, one file) for our signer;
* the pod's name, namespace and service account through the downward API.
"""

from __future__ import annotations

from typing import Any

from contract import layout, mesh
from injector.core.plan import RoleSpec

TOKEN_SECONDS = 600  # the kubelet's minimum; renewed at 80%


def mesh_volumes(spec: RoleSpec) -> list[dict[str, Any]]:
    token = {
        "serviceAccountToken": {
            "audience": layout.MESH_AUDIENCE,
            "expirationSeconds": TOKEN_SECONDS,
            "path": "token",
        }
    }
    volumes: list[dict[str, Any]] = [
        {"name": layout.IDENTITY_TOKEN_VOLUME, "projected": {"sources": [token]}},
        {
            "name": layout.MESH_TRUST_VOLUME,
            "configMap": {"name": layout.MESH_TRUST_CONFIGMAP},
        },
    ]
    if spec.get(mesh.POD_CREDENTIALS) is not None:
        certificate = {
            "podCertificate": {
                "signerName": layout.MESH_SIGNER_NAME,
                "keyType": "ECDSAP256",
                "credentialBundlePath": layout.POD_CREDENTIALS_FILE,
            }
        }
        volumes.append(
            {"name": layout.POD_CREDENTIALS_VOLUME, "projected": {"sources": [certificate]}}
        )
    return volumes


def mesh_mounts(spec: RoleSpec) -> list[dict[str, Any]]:
    mounts = [
        {
            "name": layout.IDENTITY_TOKEN_VOLUME,
            "mountPath": layout.IDENTITY_TOKEN_DIR,
            "readOnly": True,
        },
        {"name": layout.MESH_TRUST_VOLUME, "mountPath": layout.MESH_TRUST_DIR, "readOnly": True},
    ]
    if spec.get(mesh.POD_CREDENTIALS) is not None:
        mounts.append(
            {
                "name": layout.POD_CREDENTIALS_VOLUME,
                "mountPath": layout.POD_CREDENTIALS_DIR,
                "readOnly": True,
            }
        )
    return mounts


def mesh_env() -> list[dict[str, Any]]:
    return [
        {"name": knob.env, "valueFrom": {"fieldRef": {"fieldPath": path}}}
        for knob, path in mesh.DOWNWARD.items()
    ]
