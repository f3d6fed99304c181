"""The mesh roots the proxy trusts: swapped into Envoy, reported to the operator.

Bundles come from each certificate answer and from the trust ConfigMap's
files (``roots.pem`` + ``generation``, polled): the higher generation wins
and replaces Envoy's validation SDS file (atomic rename). Once Envoy's
``/certs`` lists every root of it, the fingerprints are reported to the
operator (``/v1/trust-reports``), which switches issuance to a new root only
after every running meshed pod did. Stdlib only (``pem`` reads what is
needed of the certificates).
"""

from __future__ import annotations

from sidecar.errors import IdentityError
from sidecar.files import write_atomic
from sidecar.identity import pem, protocol
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.proxy import mesh_tls
from sidecar.proxy.admin import AdminError, EnvoyAdmin
from sidecar.proxy.mesh_settings import MeshSettings


class TrustBundle:
    def __init__(
        self, mesh: MeshSettings, log: Logger, registry: Registry, admin: EnvoyAdmin
    ) -> None:
        self.mesh = mesh
        self.log = log
        self.admin = admin
        self.generation_seen = -1
        self.serials: frozenset[int] = frozenset()
        self.trusted: tuple[str, ...] = ()
        self.reported: tuple[str, ...] = ()
        self._seen: bytes | None = None
        self.generation = registry.gauge(
            "mesh_trust_bundle_generation", "Generation of the trust bundle"
        )
        self.reports = registry.counter(
            "mesh_trust_reports_total", "Trust reports sent to the operator", ("outcome",)
        )

    def apply(self, bundle: bytes, generation: int, source: str) -> bool:
        """Swap in ``bundle`` if it is newer than the one Envoy has."""
        if generation <= self.generation_seen and self.mesh.trust_file.exists():
            return False
        try:
            ders = pem.certificates(bundle)
            serials = frozenset(pem.serial(d) for d in ders)
        except ValueError as exc:
            self.log.warning(
                "mesh: trust bundle unreadable, kept the current one", source=source, error=str(exc)
            )
            return False
        if not ders:
            self.log.warning(
                "mesh: trust bundle has no certificate, kept the current one", source=source
            )
            return False
        write_atomic(self.mesh.trust_file, mesh_tls.sds_trust(bundle), mode=0o444)
        self.generation_seen = generation
        self.serials = serials
        self.trusted = tuple(pem.fingerprint(d) for d in ders)
        self.generation.set(generation)
        self.log.info("mesh: trust bundle", generation=generation, roots=len(ders), source=source)
        return True

    def poll_file(self) -> None:
        """The ConfigMap's roots (``roots.pem`` + ``generation``), when they changed."""
        path = self.mesh.trust_bundle
        try:
            bundle = path.read_bytes()
            generation = int((path.parent / "generation").read_text().strip() or 0)
        except (OSError, ValueError):
            return
        if bundle == self._seen:
            return
        self._seen = bundle
        self.apply(bundle, generation, str(path))

    def envoy_trusts_all(self) -> bool:
        try:
            listed = set(self.admin.certificates()["ca_cert"])
        except AdminError:
            return False
        return bool(self.serials) and self.serials <= listed

    def report(self) -> None:
        """Tell the operator which roots Envoy now trusts (once per change)."""
        if self.trusted == self.reported or self.mesh.signer is None or not self.envoy_trusts_all():
            return
        document = {
            "pod": {"namespace": self.mesh.identity.namespace, "name": self.mesh.pod_name},
            "trustedRoots": list(self.trusted),
        }
        try:
            token = protocol.read_token(self.mesh.token_file)
            protocol.post(
                self.mesh.signer, protocol.TRUST_REPORTS, document, token, self.mesh.signer_ca
            )
        except IdentityError as exc:
            self.reports.inc(outcome="failed")
            self.log.warning("mesh: trust report failed; retrying", error=str(exc))
            return
        self.reports.inc(outcome="sent")
        self.reported = self.trusted
        self.log.info(
            "mesh: trust reported", roots=len(self.trusted), generation=self.generation_seen
        )
