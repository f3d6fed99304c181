"""Certificate generation, rotation decisions and the Secret round-trip."""

from __future__ import annotations

import base64
import datetime as dt
import ssl

import pytest
from cryptography import x509

from injector.admission import certs
from injector.operator import rotation

NAMES = certs.service_dns_names("sidecar-injector", "sidecar-injector")
IPS = ["127.0.0.1"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def first(
    now: dt.datetime = T0, policy: rotation.RotationPolicy | None = None
) -> rotation.WebhookCerts:
    return rotation.ensure(None, NAMES, IPS, policy, now).certs


def test_service_dns_names_cover_every_name_a_client_may_use() -> None:
    assert certs.service_dns_names("inj", "ns") == [
        "inj",
        "inj.ns",
        "inj.ns.svc",
        "inj.ns.svc.cluster.local",
    ]


def test_the_serving_certificate_is_a_server_certificate_for_the_service_signed_by_the_ca() -> None:
    made = first()
    ca, serving = made.ca.certificate, made.serving.certificate
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert serving.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert certs.san_names(serving) == (set(NAMES), {"127.0.0.1"})
    assert certs.signed_by(serving, ca)
    assert made.ca.not_after == T0 + certs.CA_VALIDITY
    assert made.ca.not_before == T0 - certs.BACKDATE
    assert made.serving.not_after == T0 + certs.SERVING_VALIDITY
    # OpenSSL agrees: the CA bundle verifies the certificate for the Service name and the IP.
    context = ssl.create_default_context(cadata=made.ca_bundle.decode())
    assert context.cert_store_stats()["x509_ca"] == 1


def test_short_lifetimes_are_backdated_by_a_tenth_only() -> None:
    ca = certs.generate_ca(validity=dt.timedelta(minutes=2), now=T0)
    assert ca.not_before == T0 - dt.timedelta(seconds=12)
    assert not rotation.renewal_due(ca, T0)


def test_a_serving_certificate_never_outlives_its_ca() -> None:
    ca = certs.generate_ca(validity=dt.timedelta(days=10), now=T0)
    serving = certs.generate_serving_cert(ca, NAMES, validity=dt.timedelta(days=90), now=T0)
    assert serving.not_after == ca.not_after


def test_nothing_changes_while_both_certificates_have_more_than_a_third_left() -> None:
    made = first()
    for days in (0, 1, 30, 59):
        decision = rotation.ensure(made, NAMES, IPS, now=T0 + days * DAY)
        assert decision.reasons == ()
        assert decision.certs == made


def test_the_serving_certificate_is_renewed_with_a_third_of_its_life_left_same_ca() -> None:
    made = first()
    renew_at = rotation.renew_at(made.serving)
    assert renew_at == made.serving.not_after - (certs.SERVING_VALIDITY + certs.BACKDATE) / 3
    assert rotation.ensure(made, NAMES, IPS, now=renew_at - dt.timedelta(minutes=1)).reasons == ()
    decision = rotation.ensure(made, NAMES, IPS, now=renew_at + dt.timedelta(minutes=1))
    assert decision.changed
    assert "renewing early" in decision.reasons[0]
    assert decision.certs.ca == made.ca
    assert decision.certs.ca_bundle == made.ca_bundle
    assert decision.certs.serving != made.serving
    assert certs.signed_by(decision.certs.serving.certificate, made.ca.certificate)
    assert rotation.next_check(decision.certs) > renew_at


def test_a_renewed_ca_is_bundled_with_the_old_one_until_the_old_one_expires() -> None:
    made = first()
    at = rotation.renew_at(made.ca) + DAY
    decision = rotation.ensure(made, NAMES, IPS, now=at)
    assert decision.reasons[:2] == (
        f"the CA expires at {made.ca.not_after:%Y-%m-%d %H:%M}, renewing early",
        "the CA was renewed",
    )
    new = decision.certs
    assert new.ca != made.ca
    assert certs.signed_by(new.serving.certificate, new.ca.certificate)
    bundle = certs.load_certificates(new.ca_bundle, "bundle")
    assert bundle == [new.ca.certificate, made.ca.certificate]
    # The old CA leaves the bundle once it has expired; nothing else changes then.
    assert rotation.next_check(new) == min(made.ca.not_after, rotation.renew_at(new.serving))
    fresh = certs.generate_serving_cert(new.ca, NAMES, IPS, now=made.ca.not_after)
    current = rotation.WebhookCerts(new.ca, fresh, new.ca_bundle)
    later = rotation.ensure(current, NAMES, IPS, now=made.ca.not_after + DAY)
    assert later.reasons == ("the CA bundle changed (an old CA expired or was missing)",)
    assert certs.load_certificates(later.certs.ca_bundle, "bundle") == [new.ca.certificate]
    assert later.certs.serving == fresh


def test_a_missing_name_or_a_foreign_signature_renews_the_serving_certificate() -> None:
    made = first()
    decision = rotation.ensure(made, [*NAMES, "extra.example.com"], IPS, now=T0)
    assert decision.reasons == ("the serving certificate lacks extra.example.com",)
    assert "extra.example.com" in certs.san_names(decision.certs.serving.certificate)[0]
    other = first()
    mixed = rotation.WebhookCerts(made.ca, other.serving, made.ca_bundle)
    decision = rotation.ensure(mixed, NAMES, IPS, now=T0)
    assert decision.reasons == ("the serving certificate was not signed by the current CA",)
    assert certs.signed_by(decision.certs.serving.certificate, made.ca.certificate)


def test_expired_certificates_are_replaced() -> None:
    made = first()
    decision = rotation.ensure(made, NAMES, IPS, now=made.ca.not_after + DAY)
    assert decision.reasons[0].startswith("the CA expired at")
    assert decision.certs.ca.not_after > made.ca.not_after + DAY
    # The expired CA is not kept in the bundle.
    assert certs.load_certificates(decision.certs.ca_bundle, "b") == [decision.certs.ca.certificate]


def test_a_configured_policy_sets_lifetimes_and_the_renewal_point() -> None:
    policy = rotation.RotationPolicy(
        ca_validity=dt.timedelta(days=30),
        serving_validity=dt.timedelta(days=3),
        renew_fraction=0.5,
    )
    made = first(policy=policy)
    assert made.serving.not_after == T0 + dt.timedelta(days=3)
    lifetime = dt.timedelta(days=3) + certs.BACKDATE
    assert rotation.renew_at(made.serving, 0.5) == made.serving.not_after - lifetime / 2
    assert rotation.ensure(made, NAMES, IPS, policy, now=T0 + DAY).reasons == ()
    assert rotation.ensure(made, NAMES, IPS, policy, now=T0 + 2 * DAY).changed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"renew_fraction": 0}, "between 0 and 1"),
        ({"renew_fraction": 1.5}, "between 0 and 1"),
        ({"serving_validity": dt.timedelta(seconds=5)}, "at least 1 minute"),
    ],
)
def test_a_bad_policy_is_refused_with_what_is_accepted(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(certs.CertificateError, match=message):
        rotation.RotationPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_secret_round_trip_gives_back_the_same_certificates() -> None:
    made = first()
    data = rotation.to_secret_data(made)
    assert set(data) == {"tls.crt", "tls.key", "ca.crt", "ca.key", "ca-bundle.crt"}
    assert base64.b64decode(data["tls.crt"]) == made.serving.cert_pem
    back = rotation.from_secret_data(data)
    assert back == made
    assert rotation.ensure(back, NAMES, IPS, now=T0).reasons == ()


def test_a_damaged_secret_is_a_clear_error() -> None:
    data = rotation.to_secret_data(first())
    with pytest.raises(certs.CertificateError, match="has no data"):
        rotation.from_secret_data({}, "secret ns/x")
    with pytest.raises(certs.CertificateError, match=r"secret ns/x: missing ca\.key"):
        rotation.from_secret_data({k: v for k, v in data.items() if k != "ca.key"}, "secret ns/x")
    with pytest.raises(certs.CertificateError, match=r"tls\.crt is not valid base64"):
        rotation.from_secret_data({**data, "tls.crt": "%%%"})
    with pytest.raises(certs.CertificateError, match="not a PEM certificate"):
        rotation.from_secret_data({**data, "tls.crt": base64.b64encode(b"junk").decode()})
    other = rotation.to_secret_data(first())
    with pytest.raises(certs.CertificateError, match=r"tls\.key does not match its certificate"):
        rotation.from_secret_data({**data, "tls.key": other["tls.key"]})


def test_no_names_and_bad_addresses_are_refused() -> None:
    ca = certs.generate_ca()
    with pytest.raises(certs.CertificateError, match="no DNS name or IP address"):
        certs.generate_serving_cert(ca, [])
    with pytest.raises(certs.CertificateError, match="expected IPv4 or IPv6"):
        certs.generate_serving_cert(ca, ["x"], ["not-an-ip"])
