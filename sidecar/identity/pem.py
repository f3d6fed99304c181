"""Just enough of PEM and DER to name certificates without ``cryptography``.

The long-lived agent needs a root's fingerprint (SHA-256 of its DER, what it
reports to the operator) and serial number (what Envoy's ``/certs`` lists);
both are read here with the stdlib. Anything malformed raises ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)


def certificates(bundle: bytes) -> list[bytes]:
    """The DER of each CERTIFICATE block, in order."""
    ders = []
    for match in _BLOCK.finditer(bundle):
        try:
            ders.append(base64.b64decode(b"".join(match.group(1).split()), validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("a CERTIFICATE block is not valid base64") from None
    return ders


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _header(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, content start, content length) of the DER element at ``at``."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        return tag, at, first
    count = first & 0x7F
    if not 1 <= count <= 4 or at + count > len(data):
        raise ValueError("bad DER length")
    return tag, at + count, int.from_bytes(data[at : at + count], "big")


def serial(der: bytes) -> int:
    """The serial number: Certificate -> tbsCertificate -> [0] version? -> INTEGER."""
    tag, start, _ = _header(der, 0)
    if tag != 0x30:
        raise ValueError("not a DER certificate")
    tag, start, _ = _header(der, start)  # tbsCertificate
    if tag != 0x30:
        raise ValueError("not a DER certificate")
    tag, content, length = _header(der, start)
    if tag == 0xA0:  # explicit version
        tag, content, length = _header(der, content + length)
    if tag != 0x02 or content + length > len(der):
        raise ValueError("no serial number where expected")
    return int.from_bytes(der[content : content + length], "big", signed=False)
