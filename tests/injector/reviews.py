"""AdmissionReview builders for the webhook tests."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import jsonpatch


def review(
    obj: Any,
    *,
    operation: str = "CREATE",
    kind: str = "Pod",
    namespace: str = "default",
    dry_run: bool = False,
    uid: str | None = None,
) -> dict[str, Any]:
    group, version = ("", "v1") if kind == "Pod" else ("apps", "v1")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "operation": operation,
            "namespace": namespace,
            "userInfo": {"username": "tester"},
            "object": obj,
            "oldObject": None,
            "dryRun": dry_run,
        },
    }


def patched(obj: Any, response: dict[str, Any]) -> Any:
    """Apply the response's JSON patch (if any) to ``obj``."""
    if "patch" not in response:
        return obj
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(obj, ops, in_place=False)
