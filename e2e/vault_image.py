"""The real Vault as an image for the e2e node, used only by the e2e overlay.

The vault binary (static, built from Go modules by ``e2e.vault_build``) in a
one-layer OCI archive (``e2e.oci``), imported into the node's containerd
like the pause and CoreDNS images: no registry, no builder, never pushed.
Vault's licence (Business Source License) allows running it in our tests,
not shipping it: it is never part of ``images/`` or the product's manifests,
only of ``manifests/overlays/e2e``.
"""

from __future__ import annotations

from pathlib import Path

from e2e import images, oci, vault_build

IMAGE = f"localhost/sidecar-e2e/vault:{vault_build.VAULT_VERSION}"


def archive() -> Path:
    """The archive, written on first use (the binary is built then if needed)."""
    binary = vault_build.ensure()
    path = images.IMAGES_DIR / f"{binary.name}.oci.tar"
    if not path.exists():
        image = oci.Image(
            name=IMAGE,
            files={"/vault": (binary, 0o755)},
            entrypoint=["/vault"],
            env=("PATH=/", "HOME=/tmp"),
        )
        oci.write_archive(image, path)
    return path


if __name__ == "__main__":
    print(archive())
