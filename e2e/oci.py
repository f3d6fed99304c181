"""Single-layer OCI image archives from local files, no builder needed.

The e2e node's infrastructure images (the pod sandbox's pause, cluster DNS)
are one static binary each. ``write_archive`` packs such files into an OCI
image layout tarball (``oci-layout``, ``index.json``, ``blobs/sha256/...``:
an uncompressed layer, the image config and the manifest) that
``ctr images import`` reads; the index annotation
``io.containerd.image.name`` names the image. Deterministic: the same files
give the same digests.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Image:
    """What goes in: files (path in the image -> path here, mode), and the config."""

    name: str
    files: Mapping[str, tuple[Path, int]]
    entrypoint: Sequence[str]
    user: str = "65532:65532"
    env: Sequence[str] = ("PATH=/",)
    labels: Mapping[str, str] = field(default_factory=dict)


def _layer(files: Mapping[str, tuple[Path, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for target, (source, mode) in sorted(files.items()):
            data = source.read_bytes()
            info = tarfile.TarInfo(target.lstrip("/"))
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _descriptor(media_type: str, blob: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
        **extra,
    }


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_archive(image: Image, path: Path) -> Path:
    """Write image as an OCI layout tarball at path (replaced atomically)."""
    layer = _layer(image.files)
    config = _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": list(image.entrypoint),
                "User": image.user,
                "Env": list(image.env),
                "Labels": dict(image.labels),
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()],
            },
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": _descriptor(CONFIG, config),
            "layers": [_descriptor(LAYER, layer)],
        }
    )
    tag = image.name.rsplit(":", 1)[1]
    index = {
        "schemaVersion": 2,
        "manifests": [
            _descriptor(
                MANIFEST,
                manifest,
                annotations={
                    "io.containerd.image.name": image.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            )
        ],
    }
    members = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": _json(index),
    }
    for blob in (layer, config, manifest):
        members["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(blob))
    partial.replace(path)
    return path
