"""The proxy's certificate over time: first issuance, renewal, trust bundle, readiness.

``IdentityKeeper`` runs in the proxy agent (stdlib only). Each issuance is a
child process (``sidecar.identity.issue``) so ``cryptography`` never stays in
the agent's memory.

* ``obtain_first``: before Envoy starts, retry with back-off until a
  certificate and the trust bundle are on disk; the agent is not ready
  meanwhile, so the app does not start (native sidecars: startupProbe;
  classic: the postStart hook) and each failure is logged with its fix.
* Renewal at the signer's ``refreshAt`` (about half-life, jittered); a failed
  renewal is retried with back-off, louder as expiry nears.
* The trust bundle: from each answer and from the ConfigMap file (polled);
  the higher ``generation`` wins and is swapped into Envoy's SDS file. Once
  Envoy's ``/certs`` lists every root, the agent reports their fingerprints
  to the operator (which switches issuance to a new root only after that).
* ``readiness``: true only while Envoy serves our current certificate (its
  serial in ``/certs``) and it has not expired: Envoy's own ``/ready`` stays
  LIVE when a certificate is missing.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from sidecar.backoff import Backoff
from sidecar.errors import UsageError
from sidecar.files import write_atomic
from sidecar.identity import pem, protocol
from sidecar.identity.bundle import TrustBundle
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.proxy import mesh_tls
from sidecar.proxy.admin import AdminError, EnvoyAdmin
from sidecar.proxy.mesh_settings import MeshSettings

TRUST_POLL = 5.0
ISSUE_TIMEOUT = 60.0
SKEW_WARNING = 30.0


@dataclass(frozen=True)
class Certificate:
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    refresh_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class IdentityKeeper:
    def __init__(
        self,
        mesh: MeshSettings,
        log: Logger,
        registry: Registry,
        admin: EnvoyAdmin,
        served_by_envoy: bool = True,
    ) -> None:
        self.mesh = mesh
        # False when no listener or cluster uses the certificate (no inbound port,
        # no upstream identity): Envoy never loads it, so /certs cannot list it.
        self.served_by_envoy = served_by_envoy
        self.log = log
        self.admin = admin
        self.current: Certificate | None = None
        self.trust = TrustBundle(mesh, log, registry, admin)
        self.problem = "waiting for the first certificate"
        self.served_serial: int | None = None
        self.backoff = Backoff(initial=1.0, maximum=30.0)
        self.thread: threading.Thread | None = None
        m = registry
        self.expiry = m.gauge(
            "mesh_certificate_expiry_timestamp_seconds", "When the proxy's certificate expires"
        )
        self.refresh = m.gauge(
            "mesh_certificate_refresh_timestamp_seconds", "When its renewal starts"
        )
        self.renewals = m.counter(
            "mesh_certificate_renewals_total",
            "Certificate requests, by outcome (issued, or the failure reason)",
            ("outcome",),
        )
        self.issue_seconds = m.gauge(
            "mesh_issuance_seconds", "Last issuance: CSR sent to certificate on disk"
        )
        self.skew = m.gauge("mesh_clock_skew_seconds", "The signer's clock minus this node's")
        self.served = m.gauge(
            "mesh_certificate_served", "1 while Envoy serves the current certificate"
        )
        m.gauge("mesh_mtls_mode", "The pod's mesh mTLS mode", ("mode",)).set(1, mode=mesh.mode)

    # -- issuance ---------------------------------------------------------

    def _request(self) -> dict[str, Any]:
        m = self.mesh
        return {
            "identity": m.identity.uri,
            "namespace": m.identity.namespace,
            "pod": m.pod_name,
            "signer": m.signer,
            "signer_ca": str(m.signer_ca),
            "token_file": str(m.token_file),
            "cert_file": str(m.cert_file),
            "trusted_roots": list(self.trust.trusted),
        }

    def _run_issue(self) -> dict[str, Any]:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "sidecar.identity.issue"],
                input=json.dumps(self._request()),
                capture_output=True,
                text=True,
                timeout=ISSUE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"error": "IssuerFailed", "message": str(exc), "retry": True}
        try:
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            tail = (done.stderr or done.stdout).strip()[-400:]
            return {
                "error": "IssuerFailed",
                "message": f"exit {done.returncode}: {tail}",
                "retry": True,
            }
        return result

    def renew(self) -> bool:
        """One issuance; True when a new certificate is on disk."""
        if self.mesh.pod_credentials is not None:
            return self._from_credentials()
        result = self._run_issue()
        if "error" in result:
            self._failed(result)
            return False
        refresh = result.get("refreshAt") or ""
        not_before = protocol.parse_time(result["notBefore"], "notBefore")
        not_after = protocol.parse_time(result["notAfter"], "notAfter")
        refresh_at = (
            protocol.parse_time(refresh, "refreshAt")
            if refresh
            else not_before + (not_after - not_before) / 2
        )
        refresh_at = min(max(refresh_at, not_before), not_after)
        self.current = Certificate(int(result["serial"], 16), not_before, not_after, refresh_at)
        self.trust.apply(
            str(result["trustBundle"]).encode(), int(result["trustGeneration"]), "signer"
        )
        self.expiry.set(not_after.timestamp())
        self.refresh.set(refresh_at.timestamp())
        self.issue_seconds.set(float(result.get("issueSeconds") or 0))
        self.renewals.inc(outcome="issued")
        self.backoff.reset()
        self.problem = ""
        skew = result.get("skew")
        if isinstance(skew, int | float):
            self.skew.set(skew)
            if abs(skew) > SKEW_WARNING:
                self.log.warning(
                    "mesh: clock skew",
                    skew_seconds=round(skew, 1),
                    fix="this node's clock differs from the signer's; peers may refuse "
                    "certificates outside the 3-minute backdate: fix NTP on this node",
                )
        self.log.info(
            "mesh: certificate issued",
            identity=self.mesh.identity.uri,
            serial=result["serial"],
            not_after=result["notAfter"],
            refresh_at=refresh_at.isoformat(),
            seconds=result.get("issueSeconds"),
        )
        return True

    def _from_credentials(self) -> bool:
        """Pod Certificates: the kubelet wrote key + chain (and renews them itself);
        take them into Envoy's SDS file when they changed."""
        path = self.mesh.pod_credentials
        assert path is not None
        try:
            bundle = path.read_bytes()
            key, chain = pem.split_credentials(bundle)
            der = pem.certificates(chain)[0]
            serial = pem.serial(der)
            not_before, not_after = pem.validity(der)
        except (OSError, ValueError) as exc:
            self._failed({"error": "PodCredentials", "message": f"{path}: {exc}"})
            return False
        if self.current is not None and self.current.serial == serial:
            return True
        write_atomic(self.mesh.cert_file, mesh_tls.sds_certificate(chain, key), mode=0o400)
        # The kubelet refreshes from beginRefreshAt on; look again every poll.
        self.current = Certificate(serial, not_before, not_after, not_after)
        self.expiry.set(not_after.timestamp())
        self.renewals.inc(outcome="issued")
        self.problem = ""
        self.log.info(
            "mesh: certificate from the kubelet",
            identity=self.mesh.identity.uri,
            serial=f"{serial:x}",
            not_after=not_after.isoformat(),
        )
        return True

    def _failed(self, result: dict[str, Any]) -> None:
        reason = str(result.get("error") or "Unknown")
        message = str(result.get("message") or "")
        self.renewals.inc(outcome=reason)
        left = (self.current.not_after - _now()).total_seconds() if self.current else None
        self.problem = f"certificate request failed ({reason}): {message}"
        level = self.log.error if left is not None and left < 600 else self.log.warning
        level(
            "mesh: certificate request failed",
            identity=self.mesh.identity.uri,
            signer=self.mesh.signer,
            reason=reason,
            error=message,
            expires_in_seconds=None if left is None else round(left),
            fix=_fix(reason),
        )

    # -- loops --------------------------------------------------------------

    def obtain_first(self, stop: threading.Event) -> bool:
        """Block until the first certificate and bundle are on disk (or ``stop``)."""
        try:
            self.mesh.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"--work-dir / SIDECAR_WORK_DIR: cannot create {self.mesh.directory} "
                f"({exc.strerror}); mount a writable volume there"
            ) from None
        while not stop.is_set():
            self.trust.poll_file()
            if self.renew():
                self.trust.poll_file()
                if self.mesh.trust_file.exists():
                    return True
                self.problem = f"waiting for the trust bundle {self.mesh.trust_bundle}"
            stop.wait(self.backoff.next())
        return False

    def start(self, stop: threading.Event) -> None:
        self.thread = threading.Thread(
            target=self._loop, args=(stop,), name="mesh-identity", daemon=True
        )
        self.thread.start()

    def _loop(self, stop: threading.Event) -> None:
        retry_at: float | None = None
        while not stop.is_set():
            self.trust.poll_file()
            self.trust.report()
            current = self.current
            due = current is None or _now() >= current.refresh_at
            if self.mesh.pod_credentials is not None:
                due, retry_at = True, None  # cheap: re-read the kubelet's file each poll
            if due and (retry_at is None or time.monotonic() >= retry_at):
                retry_at = None if self.renew() else time.monotonic() + self.backoff.next()
            stop.wait(self._sleep(retry_at))

    def _sleep(self, retry_at: float | None) -> float:
        wait = TRUST_POLL
        if retry_at is not None:
            wait = min(wait, max(0.05, retry_at - time.monotonic()))
        elif self.current is not None:
            wait = min(wait, max(0.05, (self.current.refresh_at - _now()).total_seconds()))
        return wait

    # -- readiness ----------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        current = self.current
        if current is None:
            return False, self.problem or "waiting for the first certificate"
        if current.not_after <= _now():
            self.served.set(0)
            return False, f"certificate expired at {current.not_after:%H:%M:%S} UTC: {self.problem}"
        if self.served_serial != current.serial:
            if self.served_by_envoy and not self._envoy_serves(current.serial):
                self.served.set(0)
                return False, f"envoy does not serve certificate {current.serial:x} yet"
            self.served_serial = current.serial
            self.served.set(1)
        return True, "ready"

    def _envoy_serves(self, serial: int) -> bool:
        try:
            return serial in self.admin.certificates()["cert_chain"]
        except AdminError:
            return False


FIXES = {
    "SignerUnavailable": "the operator's certificate endpoint is unreachable: check the "
    "sidecar-injector pods and Service (port 15012) and NetworkPolicies",
    "TokenInvalid": "the projected token was refused by the API server: check the "
    "sidecar-identity-token volume (audience sidecar.example.io/identity)",
    "PodMismatch": "the token belongs to another pod: the pod's SIDECAR_POD_NAME must be its own",
    "PodNotInjected": "the pod lacks the injector's status annotation: re-create it so the "
    "injector admits it",
    "ClockSkew": "fix time synchronisation (NTP) on this node",
    "UnsupportedKeyType": "the agent and operator versions disagree: upgrade the sidecar image",
    "IdentityMismatch": "the pod's service account changed or the request was forged",
    "PodCredentials": "the kubelet's podCertificate volume is missing or unreadable: check the "
    "pod's events (a Denied PodCertificateRequest is final: re-create the pod)",
}


def _fix(reason: str) -> str:
    return FIXES.get(reason, "see the message; the agent keeps retrying with back-off")
