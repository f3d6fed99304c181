"""SPIFFE identities of injected pods and the peer patterns of ``allow-from``.

Pure and stdlib-only: the injector validates annotations with these parsers and
the agent compiles the same values into Envoy configuration, so both accept
exactly the same spellings. Each parser raises ``ValueError`` naming the value
and what is accepted.

* An identity is ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``.
* A peer pattern is ``NAMESPACE/SERVICEACCOUNT`` where either side may be
  ``*`` (any) or end in ``*`` (a prefix: ``team-*``); ``*`` alone means any
  identity of the trust domain.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MTLS_MODES = ("strict", "permissive", "off")
DEFAULT_MTLS_MODE = "permissive"
ALLOW_FROM_MODES = ("enforce", "dry-run")
MAX_PEERS = 64
SNI_SUFFIX = "mesh.internal"
DEFAULT_TRUST_DOMAIN = "cluster.local"

_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PREFIX = re.compile(r"^[a-z0-9][-a-z0-9.]*$")

MTLS_HELP = "strict, permissive or off"
TRUST_DOMAIN_HELP = (
    "a SPIFFE trust domain: lowercase letters, digits, '.', '-' and '_', at most 255 "
    "characters, e.g. cluster.local"
)
PEER_HELP = "NAMESPACE/SERVICEACCOUNT, e.g. shop/checkout"
ALLOW_FROM_HELP = (
    "comma-separated NAMESPACE/SERVICEACCOUNT patterns, each side a name, * or a "
    f"prefix ending in * (shop/checkout, ops/*, */prometheus, team-*/*), or * for "
    f"any mesh identity; at most {MAX_PEERS}"
)


def parse_trust_domain(text: str) -> str:
    value = text.strip()
    if len(value) > 255 or not _TRUST_DOMAIN.match(value):
        raise ValueError(f"{text!r} is not {TRUST_DOMAIN_HELP}")
    return value


def parse_mtls_mode(text: str) -> str:
    value = text.strip().lower()
    if value not in MTLS_MODES:
        raise ValueError(f"{text!r} is not one of {MTLS_HELP}")
    return value


def parse_allow_from_mode(text: str) -> str:
    value = text.strip().lower()
    if value not in ALLOW_FROM_MODES:
        raise ValueError(f"{text!r} is not one of {', '.join(ALLOW_FROM_MODES)}")
    return value


def is_namespace(text: str) -> bool:
    return len(text) <= 63 and bool(_LABEL.match(text))


def is_service_account(text: str) -> bool:
    return len(text) <= 253 and bool(_SUBDOMAIN.match(text))


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    @property
    def uri(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri

    @property
    def sni(self) -> str:
        """The TLS server name a mesh client sends to a proxy with this identity."""
        name = f"{self.service_account}.{self.namespace}.{SNI_SUFFIX}"
        if len(name) <= 253:
            return name
        digest = hashlib.sha256(self.service_account.encode()).hexdigest()[:32]
        return f"{digest}.{self.namespace}.{SNI_SUFFIX}"

    @classmethod
    def of(cls, trust_domain: str, namespace: str, service_account: str) -> SpiffeId:
        """A checked identity; ``ValueError`` names the part that is wrong."""
        parse_trust_domain(trust_domain)
        if not is_namespace(namespace):
            raise ValueError(f"namespace {namespace!r} is not a Kubernetes namespace name")
        if not is_service_account(service_account):
            raise ValueError(
                f"service account {service_account!r} is not a Kubernetes service account name"
            )
        return cls(trust_domain, namespace, service_account)

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """``spiffe://td/ns/N/sa/S`` -> ``SpiffeId``."""
        accepted = "spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT"
        if not uri.startswith("spiffe://"):
            raise ValueError(f"{uri[:300]!r} is not a SPIFFE ID ({accepted})")
        parts = uri[len("spiffe://") :].split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise ValueError(f"{uri[:300]!r} is not a mesh identity ({accepted})")
        return cls.of(parts[0], parts[2], parts[4])


@dataclass(frozen=True)
class PeerPattern:
    """One ``allow-from`` entry: each side a name, ``*``, or a prefix ending in ``*``."""

    namespace: str
    service_account: str

    def __str__(self) -> str:
        if self.namespace == "*" and self.service_account == "*":
            return "*"
        return f"{self.namespace}/{self.service_account}"

    def matches(self, identity: SpiffeId) -> bool:
        return _side_matches(self.namespace, identity.namespace) and _side_matches(
            self.service_account, identity.service_account
        )


def _side_matches(pattern: str, value: str) -> bool:
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _side(text: str, what: str, literal_ok: bool, entry: str) -> str:
    if text == "*":
        return text
    if text.endswith("*"):
        if _PREFIX.match(text[:-1]) and "*" not in text[:-1]:
            return text
    elif literal_ok:
        return text
    raise ValueError(f"{entry!r}: {what} {text!r} is not a name, * or a prefix ending in *")


def parse_peer_pattern(text: str) -> PeerPattern:
    entry = text.strip()
    if entry == "*":
        return PeerPattern("*", "*")
    namespace, sep, account = entry.partition("/")
    if not sep or "/" in account:
        raise ValueError(f"{entry!r} is not NAMESPACE/SERVICEACCOUNT (e.g. shop/checkout, ops/*)")
    return PeerPattern(
        _side(namespace, "namespace", is_namespace(namespace), entry),
        _side(account, "service account", is_service_account(account), entry),
    )


def parse_allow_from(text: str) -> tuple[PeerPattern, ...]:
    """``"shop/checkout, ops/*"`` -> patterns (deduplicated, in order)."""
    entries = [part.strip() for part in text.split(",")]
    if not any(entries):
        raise ValueError(f"{text!r} names no peer; expected {ALLOW_FROM_HELP}")
    if len(entries) > MAX_PEERS:
        raise ValueError(f"{len(entries)} entries; at most {MAX_PEERS} are accepted")
    patterns: list[PeerPattern] = []
    for entry in entries:
        if not entry:
            raise ValueError(f"{text[:200]!r} has an empty entry; expected {ALLOW_FROM_HELP}")
        pattern = parse_peer_pattern(entry)
        if pattern not in patterns:
            patterns.append(pattern)
    return tuple(patterns)


def parse_peer(text: str) -> tuple[str, str]:
    """An exact ``NAMESPACE/SERVICEACCOUNT`` (no wildcards): the upstream's identity."""
    namespace, sep, account = text.strip().partition("/")
    if not sep or not is_namespace(namespace) or not is_service_account(account):
        raise ValueError(f"{text[:200]!r} is not {PEER_HELP}")
    return namespace, account
