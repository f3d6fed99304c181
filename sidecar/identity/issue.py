"""One certificate issuance, in a short-lived child process: ``python -m sidecar.identity.issue``.

The only agent code that imports ``cryptography`` (about 18 MiB of RSS): the
long-lived agent runs this once per renewal and stays small. Reads a JSON
request on stdin (no secret in it: the token is read from its file), then:

1. generates an ECDSA P-256 key (it never leaves the pod: it is written only
   to the SDS file in the proxy's private volume, mode 0400);
2. sends a CSR for our SPIFFE ID with the projected token to the signer;
3. checks the answer: the leaf is for our key and only our identity, it chains
   to a root of the returned bundle, and it is valid now (a leaf not valid
   yet means this clock is behind the signer's: ``ClockSkew``);
4. writes the SDS certificate file by atomic rename (Envoy picks it up).

Prints one JSON object on stdout: the certificate's serial, times, the bundle
and its generation, the skew; or ``{"error": reason, "message": ..., "retry":
bool}`` with exit code 1.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from sidecar.errors import CertificateRejected, IdentityError, SignerUnavailable
from sidecar.files import write_atomic
from sidecar.identity import protocol
from sidecar.proxy import mesh_tls

SKEW_TOLERANCE = dt.timedelta(seconds=5)


def new_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key, pem


def csr_pem(key: ec.EllipticCurvePrivateKey, identity: str) -> str:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


def fingerprints(bundle_pem: bytes) -> list[str]:
    from hashlib import sha256  # noqa: PLC0415

    certs = x509.load_pem_x509_certificates(bundle_pem)
    return [sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest() for c in certs]


def check(
    answer: dict[str, Any], key: ec.EllipticCurvePrivateKey, identity: str, now: dt.datetime
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The leaf and roots of a signer answer, once they pass every check."""
    try:
        chain = x509.load_pem_x509_certificates(str(answer["certificateChain"]).encode())
        roots = x509.load_pem_x509_certificates(str(answer["trustBundle"]).encode())
    except (KeyError, ValueError) as exc:
        raise CertificateRejected(
            "BadAnswer", f"the signer's answer is unreadable ({exc})"
        ) from None
    leaf = chain[0]
    if leaf.public_key() != key.public_key():
        raise CertificateRejected("KeyMismatch", "the certificate is not for the key we sent")
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    names = [str(name.value) for name in sans]
    if names != [identity]:
        raise CertificateRejected(
            "IdentityMismatch", f"the certificate names {names}, expected only {identity}"
        )
    if leaf.not_valid_before_utc > now + SKEW_TOLERANCE:
        ahead = (leaf.not_valid_before_utc - now).total_seconds()
        raise CertificateRejected(
            "ClockSkew",
            f"the certificate is valid only from {leaf.not_valid_before_utc:%H:%M:%S} UTC, "
            f"{ahead:.0f}s after this clock: this node's clock is behind the signer's by more "
            "than the backdate; fix time synchronisation (NTP) on this node",
        )
    if leaf.not_valid_after_utc <= now:
        raise CertificateRejected(
            "ClockSkew",
            f"the certificate expired at {leaf.not_valid_after_utc:%H:%M:%S} UTC by this clock: "
            "this node's clock is ahead of the signer's; fix time synchronisation (NTP)",
        )
    try:
        verifier = PolicyBuilder().store(Store(roots)).time(now).build_client_verifier()
        verifier.verify(leaf, chain[1:])
    except (VerificationError, ValueError) as exc:
        raise CertificateRejected(
            "UntrustedChain", f"the certificate does not chain to the returned roots ({exc})"
        ) from None
    return leaf, roots


def issue(request: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    identity = str(request["identity"])
    key, key_pem = new_key()
    token = protocol.read_token(Path(request["token_file"]))
    document = {
        "csr": csr_pem(key, identity),
        "pod": {"namespace": request["namespace"], "name": request["pod"]},
        "trustedRoots": list(request.get("trusted_roots") or []),
    }
    sent = time.monotonic()
    answer = protocol.post(
        request["signer"],
        protocol.CERTIFICATES,
        document,
        token,
        Path(request["signer_ca"]),
        float(request.get("timeout", 10.0)),
    )
    leaf, roots = check(answer.body, key, identity, dt.datetime.now(dt.UTC))
    chain_pem = str(answer.body["certificateChain"]).encode()
    write_atomic(
        Path(request["cert_file"]), mesh_tls.sds_certificate(chain_pem, key_pem), mode=0o400
    )
    done = time.monotonic()
    return {
        "serial": f"{leaf.serial_number:x}",
        "notBefore": leaf.not_valid_before_utc.isoformat(),
        "notAfter": leaf.not_valid_after_utc.isoformat(),
        "refreshAt": str(answer.body.get("refreshAt") or ""),
        "trustBundle": str(answer.body["trustBundle"]),
        "trustGeneration": int(answer.body.get("trustGeneration") or 0),
        "roots": [
            {"fingerprint": fp, "notAfter": root.not_valid_after_utc.isoformat()}
            for fp, root in zip(
                fingerprints(str(answer.body["trustBundle"]).encode()), roots, strict=True
            )
        ],
        "skew": answer.skew,
        "issueSeconds": round(done - sent, 4),
        "totalSeconds": round(done - started, 4),
    }


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
        result = issue(request)
    except IdentityError as exc:
        retry = isinstance(exc, SignerUnavailable)
        reason = getattr(exc, "reason", "SignerUnavailable" if retry else "Denied")
        print(json.dumps({"error": reason, "message": str(exc), "retry": retry}))
        return 1
    except (KeyError, TypeError, ValueError, OSError) as exc:
        print(
            json.dumps(
                {"error": "Internal", "message": f"{type(exc).__name__}: {exc}", "retry": True}
            )
        )
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
