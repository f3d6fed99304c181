"""Keep our MutatingWebhookConfiguration's ``caBundle`` equal to the CA bundle we serve.

Only our own configuration (by name) is read and patched, so RBAC can name it
in ``resourceNames``. The patch is a JSON Patch that first ``test``s the
``resourceVersion`` it was computed from: a concurrent change (a GitOps sync,
``kubectl apply``) makes it fail with 409 or 422 and the next round recomputes
it, instead of overwriting someone else's edit of another field. Every webhook
in the configuration gets the bundle; a GitOps tool that resets it is
corrected on the next round (see docs/gitops.md to stop the two fighting).
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from injector.operator.kube import JSON_PATCH, Kube, KubeError

log = logging.getLogger("injector.operator.webhookconfig")
PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
FIELD_MANAGER = "sidecar-injector"  # what managedFields shows as the caBundle's owner


def bundle_patch(config: dict[str, Any], ca_bundle: bytes) -> list[dict[str, Any]]:
    """The JSON Patch putting ``ca_bundle`` in every webhook's clientConfig ([]: none needed)."""
    wanted = base64.b64encode(ca_bundle).decode("ascii")
    ops: list[dict[str, Any]] = []
    for index, webhook in enumerate(config.get("webhooks") or []):
        client = webhook.get("clientConfig") or {}
        if client.get("caBundle") == wanted:
            continue
        if "clientConfig" not in webhook:
            ops.append({"op": "add", "path": f"/webhooks/{index}/clientConfig", "value": {}})
        ops.append(
            {
                "op": "replace" if "caBundle" in client else "add",
                "path": f"/webhooks/{index}/clientConfig/caBundle",
                "value": wanted,
            }
        )
    if ops:
        version = (config.get("metadata") or {}).get("resourceVersion")
        if version:
            ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": version})
    return ops


class WebhookConfigPatcher:
    def __init__(self, kube: Kube, name: str) -> None:
        self.kube = kube
        self.name = name
        self.missing_logged = False

    async def ensure_ca_bundle(self, ca_bundle: bytes) -> bool | None:
        """Patch if needed: True patched, False already right, None no such configuration."""
        config = await self.kube.get(PATH + self.name)
        if config is None:
            if not self.missing_logged:
                log.warning(
                    "MutatingWebhookConfiguration %s does not exist (yet); its caBundle is "
                    "set once it is applied",
                    self.name,
                )
                self.missing_logged = True
            return None
        self.missing_logged = False
        ops = bundle_patch(config, ca_bundle)
        if not ops:
            return False
        try:
            await self.kube.request(
                "PATCH", PATH + self.name, ops, JSON_PATCH, query={"fieldManager": FIELD_MANAGER}
            )
        except KubeError as exc:
            if exc.status in (409, 422):  # changed under us: the next round recomputes
                log.info("MutatingWebhookConfiguration %s changed meanwhile: %s", self.name, exc)
                return None
            raise
        log.info(
            "patched the caBundle of MutatingWebhookConfiguration %s (%d webhooks)",
            self.name,
            sum(1 for op in ops if op["path"].endswith("/caBundle")),
        )
        return True
