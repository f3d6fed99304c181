"""The whole Envoy bootstrap: the explicit listeners (``bootstrap``) plus the
captured-traffic listeners (``capture``) and the forward proxy (``egress``)
when their modes are on. Pure; what the supervisor writes and validates."""

from __future__ import annotations

from typing import Any

from sidecar.proxy import bootstrap, capture, egress
from sidecar.proxy.settings import ProxySettings


def render(settings: ProxySettings) -> dict[str, Any]:
    config = bootstrap.render(settings)
    resources = config["static_resources"]
    for mode in (capture, egress):
        resources["listeners"] += mode.listeners(settings)
        resources["clusters"] += mode.clusters(settings)
    return config
