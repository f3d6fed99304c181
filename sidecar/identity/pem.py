"""Just enough of PEM and DER to name certificates without ``cryptography``.

The long-lived agent needs a root's fingerprint (SHA-256 of its DER, what it
reports to the operator) and serial number (what Envoy's ``/certs`` lists);
both are read here with the stdlib. Anything malformed raises ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
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


def _skip(data: bytes, at: int) -> int:
    """The offset just after the DER element at ``at``."""
    _, content, length = _header(data, at)
    return content + length


def _time(data: bytes, at: int) -> dt.datetime:
    tag, content, length = _header(data, at)
    if content + length > len(data):
        raise ValueError("truncated certificate time")
    text = data[content : content + length].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError("no certificate time where expected")
    return dt.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=dt.UTC)


def validity(der: bytes) -> tuple[dt.datetime, dt.datetime]:
    """(notBefore, notAfter): tbsCertificate -> version? serial signature issuer validity."""
    _, start, _ = _header(der, 0)
    _, at, _ = _header(der, start)  # inside tbsCertificate
    if _header(der, at)[0] == 0xA0:
        at = _skip(der, at)
    for _ in range(3):  # serial, signature algorithm, issuer
        at = _skip(der, at)
    tag, content, _ = _header(der, at)
    if tag != 0x30:
        raise ValueError("no validity where expected")
    not_before = _time(der, content)
    return not_before, _time(der, _skip(der, content))


_KEY = re.compile(
    rb"-----BEGIN (?:EC |)PRIVATE KEY-----.*?-----END (?:EC |)PRIVATE KEY-----\s*", re.S
)


def split_credentials(bundle: bytes) -> tuple[bytes, bytes]:
    """A kubelet credential bundle (the key, then the chain) -> (key PEM, chain PEM)."""
    key = _KEY.search(bundle)
    chain = b"".join(m.group(0) + b"\n" for m in _BLOCK.finditer(bundle))
    if key is None or not chain:
        raise ValueError("expected a PEM private key followed by PEM certificates")
    return key.group(0).strip() + b"\n", chain
