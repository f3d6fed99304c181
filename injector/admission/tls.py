"""The webhook's TLS server context, reloaded in place when the certificate changes.

One ``ssl.SSLContext`` is given to the server once; ``ServingTLS.load`` calls
``load_cert_chain`` on that same live context. A TLS connection copies the
certificate and key from the context when its handshake starts, so connections
already open keep the old certificate until they close and every new handshake
gets the new one: no restart, no dropped request.

``load_cert_chain`` only reads files. The PEM goes through an anonymous
in-memory file (``memfd``) where the kernel has one, so the private key never
touches a disk and a read-only root filesystem is fine; elsewhere through a
private temporary directory that is removed at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from injector.admission.certs import KeyPair

# TLS 1.2: forward-secret AEAD suites only (no CBC, no SHA-1 MAC, no RSA key
# exchange), for ECDSA and RSA certificates. TLS 1.3 suites are all AEAD.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def new_server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_RENEGOTIATION
    return context


@contextlib.contextmanager
def _pem_file(pem: bytes) -> Iterator[str]:
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd_create("sidecar-injector-tls", 0)
        try:
            os.write(fd, pem)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="sidecar-injector-tls-") as directory:
        path = os.path.join(directory, "tls.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        yield path


def fingerprint(cert_pem: bytes) -> str:
    """A short identifier of a certificate (SHA-256 of its PEM), for logs and tests."""
    return hashlib.sha256(cert_pem).hexdigest()[:16]


class ServingTLS:
    """A server ``SSLContext`` whose certificate can be replaced while it serves."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.context = context if context is not None else new_server_context()
        self.current: KeyPair | None = None
        self.listeners: list[Callable[[Any], None]] = []  # told ("tls", cert, key) on a change

    def load(self, pair: KeyPair) -> bool:
        """Serve ``pair`` from the next handshake on; False if it is already served.

        A certificate that does not match its key raises ``ssl.SSLError`` and
        the context keeps serving the previous one. (OpenSSL installs the
        certificate before it checks the key, so a failed ``load_cert_chain``
        would leave the live context half-changed: the pair is tried on a
        scratch context first.)
        """
        if self.current is not None and self.current.cert_pem == pair.cert_pem:
            return False
        with _pem_file(pair.cert_pem + b"\n" + pair.key_pem) as path:
            new_server_context().load_cert_chain(path)
            self.context.load_cert_chain(path)
        self.current = pair
        for listener in self.listeners:
            listener(("tls", pair.cert_pem, pair.key_pem))
        return True

    def load_files(self, certfile: str, keyfile: str) -> None:
        """Serve a certificate and key given as files (``--tls-cert``/``--tls-key``)."""
        with open(certfile, "rb") as cert, open(keyfile, "rb") as key:
            self.load(KeyPair(cert.read(), key.read()))

    @property
    def fingerprint(self) -> str | None:
        return fingerprint(self.current.cert_pem) if self.current else None

    def uvicorn_factory(self) -> Callable[[Any, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
        """For ``uvicorn.Config(ssl_context_factory=...)``: always this live context."""

        def factory(_config: Any, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
            return self.context

        return factory
