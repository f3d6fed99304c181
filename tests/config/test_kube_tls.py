"""The minimal API client over real TLS: the CA file verifies the server, and
a rotated CA file is picked up without a restart."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from injector.admission.certs import generate_ca, generate_serving_cert
from sidecar.config.kube import KubeClient
from sidecar.config.settings import KubeAccess
from sidecar.errors import RetryableSourceError
from tests.config.servers import FakeApiServer, configmap, serve


def test_ca_file_verifies_the_server_and_its_rotation_is_picked_up(tmp_path: Path) -> None:
    served_by = generate_ca("cluster-ca")
    other = generate_ca("another-ca")
    serving = generate_serving_cert(served_by, ["localhost"], ["127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(serving.cert_pem)
    (tmp_path / "tls.key").write_bytes(serving.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(other.cert_pem)
    token = tmp_path / "token"
    token.write_text("t")
    state = FakeApiServer("app-config")
    state.current = configmap("app-config", 9, {"k": "v"})
    with serve(state.handler(), tls=context) as server:
        api = f"https://127.0.0.1:{server.server_address[1]}"
        client = KubeClient(KubeAccess(api, token, ca_file, "ns"))
        params = {"fieldSelector": "metadata.name=app-config"}
        with pytest.raises(RetryableSourceError, match="SIDECAR_KUBE_CA_FILE"):
            client.get("/api/v1/namespaces/ns/configmaps", params)
        assert state.list_calls == 0
        ca_file.write_bytes(other.cert_pem + served_by.cert_pem)  # the rotation bundle
        listed = client.get("/api/v1/namespaces/ns/configmaps", params)
        assert listed["metadata"]["resourceVersion"] == "1"
        assert state.tokens == ["Bearer t"]
        ca_file.write_bytes(b"-----BEGIN CERT")  # caught mid-write: keep the last good CA
        assert client.get("/api/v1/namespaces/ns/configmaps", params)["items"]
