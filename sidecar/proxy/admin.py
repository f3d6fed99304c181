"""A small client for Envoy's admin API on 127.0.0.1 (stdlib ``http.client``).

Only what the supervisor needs: ``/ready``, ``/stats`` (parsed into a dict),
``/stats/prometheus`` (passed through to the agent's /metrics), and the POSTs
that start a drain (``/healthcheck/fail``, ``/drain_listeners``). Admin
mutations must be POSTs; a GET answers 405.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote


class AdminError(Exception):
    """Envoy's admin endpoint could not be reached or answered garbage."""


class EnvoyAdmin:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def request(self, method: str, path: str, timeout: float | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, path, headers={"Connection": "close"})
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            raise AdminError(f"envoy admin {method} {path}: {exc}") from exc
        finally:
            conn.close()

    def get(self, path: str, timeout: float | None = None) -> tuple[int, str]:
        return self.request("GET", path, timeout)

    def post(self, path: str) -> tuple[int, str]:
        status, body = self.request("POST", path)
        if status != 200:
            raise AdminError(f"envoy admin POST {path} answered {status}: {body.strip()}")
        return status, body

    def ready(self) -> tuple[bool, str]:
        """Envoy's own /ready: 200 LIVE, or 503 PRE_INITIALIZING/INITIALIZING/DRAINING."""
        status, body = self.get("/ready", timeout=1.0)
        return status == 200, body.strip() or str(status)

    def stats(self, regex: str, *, used_only: bool = False) -> dict[str, int]:
        """Counters and gauges whose name matches ``regex``; histograms are skipped."""
        query = ("usedonly&" if used_only else "") + "filter=" + quote(regex, safe="")
        status, body = self.get(f"/stats?{query}")
        if status != 200:
            raise AdminError(f"envoy admin /stats answered {status}: {body.strip()}")
        return parse_stats(body)

    def certificates(self) -> dict[str, list[int]]:
        """Serial numbers in ``/certs``: ``cert_chain`` (what Envoy serves) and
        ``ca_cert`` (the roots it trusts), over every TLS context."""
        status, body = self.get("/certs")
        if status != 200:
            raise AdminError(f"envoy admin /certs answered {status}")
        return parse_certs(body)

    def prometheus(self) -> str:
        status, body = self.get("/stats/prometheus")
        if status != 200:
            raise AdminError(f"envoy admin /stats/prometheus answered {status}")
        return body if body.endswith("\n") else body + "\n"


def parse_stats(body: str) -> dict[str, int]:
    """``name: 12`` lines -> ``{"name": 12}``."""
    values: dict[str, int] = {}
    for line in body.splitlines():
        name, sep, value = line.rpartition(": ")
        if sep and value.strip().isdigit():
            values[name.strip()] = int(value)
    return values


def parse_certs(body: str) -> dict[str, list[int]]:
    """Envoy's ``/certs`` JSON -> serial numbers by kind (``cert_chain``, ``ca_cert``)."""
    try:
        document = json.loads(body)
        found: dict[str, list[int]] = {"cert_chain": [], "ca_cert": []}
        for item in document.get("certificates", []):
            for kind, serials in found.items():
                serials += [int(c.get("serial_number", "0"), 16) for c in item.get(kind) or []]
    except (ValueError, AttributeError, TypeError) as exc:
        raise AdminError(f"envoy admin /certs: unreadable answer ({exc})") from None
    return found
