"""The agent <-> signer protocol: paths, JSON shapes, the HTTPS client. Stdlib only.

``POST /v1/certificates`` with ``Authorization: Bearer <projected token>``::

    {"csr": "<PEM PKCS#10>", "pod": {"namespace": "shop", "name": "web-1"},
     "trustedRoots": ["<sha256 of each root the agent trusts>", ...]}

200::

    {"identity": "spiffe://...", "certificateChain": "<PEM>", "serial": "<hex>",
     "notBefore": "<RFC 3339>", "notAfter": "...", "refreshAt": "...",
     "trustBundle": "<PEM roots>", "trustGeneration": 7}

``POST /v1/trust-reports`` (same header): ``{"pod": ..., "trustedRoots": [...]}``
-> 204: the agent now trusts these roots (the operator switches issuance to a
new root once every agent reported it).

Errors: 4xx/5xx with ``{"reason": "CamelCase", "message": "what and the fix"}``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sidecar.errors import SignerDenied, SignerUnavailable

CERTIFICATES = "/v1/certificates"
TRUST_REPORTS = "/v1/trust-reports"
MAX_ANSWER = 1 << 20
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    skew: float | None  # signer's clock minus ours (seconds), from its Date header


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise SignerUnavailable(
            f"identity token {path}: cannot read it ({exc.strerror}); the pod needs the "
            "projected service-account token volume the injector adds (sidecar-identity-token)"
        ) from None
    if not token:
        raise SignerUnavailable(
            f"identity token {path} is empty; the kubelet has not written it yet"
        )
    return token


def post(
    signer: str,
    path: str,
    document: Mapping[str, Any],
    token: str,
    ca_file: Path,
    timeout: float = 10.0,
) -> Answer:
    """POST JSON to the signer over verified TLS; 2xx -> ``Answer``, else an IdentityError."""
    url = urlsplit(signer)
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise SignerUnavailable(
            f"signer CA {ca_file}: unusable ({exc}); it comes from the ConfigMap "
            "sidecar-mesh-trust, which the operator writes into every namespace"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    conn = http.client.HTTPSConnection(
        url.hostname or "", url.port or 443, timeout=timeout, context=context
    )
    body = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        "User-Agent": "sidecar-proxy-identity",
    }
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read(MAX_ANSWER + 1)
        status = response.status
        date = response.getheader("Date")
    except (OSError, http.client.HTTPException) as exc:
        raise SignerUnavailable(f"signer {signer}: {exc or type(exc).__name__}") from None
    finally:
        conn.close()
    return _answer(signer, status, raw, date)


def _answer(signer: str, status: int, raw: bytes, date: str | None) -> Answer:
    if len(raw) > MAX_ANSWER:
        raise SignerUnavailable(f"signer {signer}: answer larger than {MAX_ANSWER} bytes")
    try:
        document = json.loads(raw) if raw else {}
    except ValueError:
        document = {"message": raw[:200].decode("utf-8", "replace")}
    if not isinstance(document, dict):
        document = {"message": "the answer is not a JSON object"}
    if status >= 300:
        reason = str(document.get("reason") or f"HTTP{status}")
        message = f"signer {signer} answered {status} {reason}: {document.get('message', '')}"
        if status in RETRYABLE:
            raise SignerUnavailable(message)
        raise SignerDenied(reason, message)
    return Answer(status, document, _skew(date))


def _skew(date: str | None) -> float | None:
    if not date:
        return None
    try:
        theirs = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    return (theirs - dt.datetime.now(dt.UTC)).total_seconds()


def parse_time(text: object, what: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except ValueError:
        raise SignerDenied("BadAnswer", f"the signer's {what} {text!r} is not a time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
