"""The operator's pure parts: caBundle patches, options, readiness before loading."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from injector.admission.serve import build_context
from injector.core.settings import Settings
from injector.errors import ConfigError
from injector.operator import rotation
from injector.operator.controller import Operator
from injector.operator.kube import Kube, KubeAccess
from injector.operator.options import OperatorOptions
from injector.operator.webhookconfig import bundle_patch

BUNDLE = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
WANTED = base64.b64encode(BUNDLE).decode()


def config(*client_configs: dict[str, str]) -> dict[str, object]:
    return {
        "metadata": {"name": "sidecar-injector", "resourceVersion": "42"},
        "webhooks": [{"name": f"w{i}", "clientConfig": c} for i, c in enumerate(client_configs)],
    }


def test_the_patch_sets_every_webhook_and_tests_the_version_it_read() -> None:
    ops = bundle_patch(config({"url": "https://x"}, {"caBundle": "b2xk"}), BUNDLE)
    assert ops == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": WANTED},
        {"op": "replace", "path": "/webhooks/1/clientConfig/caBundle", "value": WANTED},
    ]


def test_no_patch_when_every_webhook_already_has_the_bundle() -> None:
    assert bundle_patch(config({"caBundle": WANTED}, {"caBundle": WANTED}), BUNDLE) == []


def test_options_come_from_flags_over_the_environment() -> None:
    options = OperatorOptions.from_mapping(
        {
            "injector_namespace": None,
            "secret": "my-tls",
            "dns_name": ["injector.example.com"],
            "cert_ips": ["127.0.0.1"],
            "cert_validity": "48h",
            "ca_validity": "720h",
            "renew_fraction": 0.5,
            "cert_interval": "1s",
        },
        {"POD_NAMESPACE": "inj", "POD_NAME": "inj-abc"},
    )
    assert options.namespace == "inj"
    assert options.secret == "my-tls"
    assert options.identity.startswith("inj-abc-")
    assert options.cert_interval == 1.0
    assert options.policy == rotation.RotationPolicy(
        dt.timedelta(days=30), dt.timedelta(hours=48), 0.5
    )
    assert options.dns_names() == [
        "sidecar-injector",
        "sidecar-injector.inj",
        "sidecar-injector.inj.svc",
        "sidecar-injector.inj.svc.cluster.local",
        "injector.example.com",
    ]
    assert options.cert_ips == ("127.0.0.1",)
    # Two replicas never share an identity, even with the same pod name.
    again = OperatorOptions.from_mapping({}, {"POD_NAME": "inj-abc"})
    assert again.identity != options.identity


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cert_validity": "soon"}, "is not a duration such as"),
        ({"renew_fraction": 2.0}, "between 0 and 1"),
        ({"cert_validity": "10s"}, "at least 1 minute"),
    ],
)
def test_bad_operator_flags_are_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OperatorOptions.from_mapping(options, {})


def test_readiness_waits_for_certificates_profiles_and_namespaces() -> None:
    ctx = build_context(Settings(), "127.0.0.1", 0)
    operator = Operator(
        ctx, OperatorOptions(identity="test"), Kube(KubeAccess(server="https://127.0.0.1:1"))
    )
    ready, reason = ctx.readiness()
    assert ready is False
    assert "certificates: certificates not loaded from the Secret yet" in reason
    assert "profiles: SidecarProfiles not listed yet" in reason
    assert "namespaces: namespaces not listed yet" in reason
    operator.certificates.serve_bootstrap()
    assert ctx.tls.current is not None  # probes can answer before the Secret is read
    assert ctx.readiness()[0] is False
