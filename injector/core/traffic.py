"""How a pod's traffic reaches the proxy: explicit listeners, transparent
capture (``proxy-capture: iptables``) and the forward proxy (``proxy-egress:
http-proxy``). Pure.

* ``Traffic``: the modes of the pod (its rows over the profile's), parsed;
* ``check``: every combination that cannot work (one denial naming them
  all) and the risky ones (warnings);
* ``egress_env`` / ``without_egress_env``: ``HTTP_PROXY`` / ``HTTPS_PROXY`` /
  ``NO_PROXY`` (both spellings) in the app containers, and taking them out
  again on re-injection;
* ``describe``: the traffic plan ``explain`` shows: what is captured, what is
  not, where each port goes.

The capture init container itself is built by ``injector.core.containers``
from the rows of ``contract.capture``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from contract import capture, layout, proxy
from contract.knobs import Values
from contract.units import Network, PortRange, format_port_ranges
from injector.core.settings import DEFAULT_CLUSTER_DOMAIN, Resources, cpu, memory
from injector.errors import InjectionDenied

# The init container runs Python and iptables once: a small request, and a
# limit that does not throttle its start (what a pod waits for).
CAPTURE_RESOURCES = Resources(cpu("10m"), cpu("1"), memory("32Mi"), memory("64Mi"))
POD_IPS_VARIABLE = "SIDECAR_POD_IPS"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
# What egress adds to the app containers' env (listed in the status annotation
# so that a re-injection takes exactly these out again, and nothing else).
EGRESS_VARIABLES = frozenset(
    {POD_IPS_VARIABLE, *PROXY_VARIABLES, *(name.lower() for name in PROXY_VARIABLES)}
)
FORWARD_PROXY = f"http://127.0.0.1:{layout.EGRESS_PORT}"


@dataclass(frozen=True)
class Traffic:
    capture: bool = False
    egress: bool = False
    exclude_ports: tuple[PortRange, ...] = ()
    exclude_cidrs: tuple[Network, ...] = ()
    inbound_ports: tuple[PortRange, ...] | None = None  # None: every port; (): none
    tcp_ports: tuple[PortRange, ...] = ()  # outbound, passed through without detection
    exclusions_asked: tuple[str, ...] = ()  # the pod's capture annotations
    app_ports: tuple[int, ...] = ()  # the TCP ports the app containers declare
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN  # NO_PROXY's in-cluster suffixes

    def ports(self) -> dict[int, str]:
        """Port -> what of these modes listens there."""
        found = {}
        if self.capture:
            found[layout.CAPTURE_OUTBOUND_PORT] = "the proxy's captured-outbound listener"
            found[layout.CAPTURE_INBOUND_PORT] = "the proxy's captured-inbound listener"
        if self.egress:
            found[layout.EGRESS_PORT] = "the proxy's forward proxy (egress)"
        return found


def plan(
    asked: Values,
    proxy_values: Values | None,
    capture_values: Values,
    *,
    app: Sequence[Mapping[str, Any]],
    pod_security: Mapping[str, Any],
    native: bool,
    user_inits: Sequence[str],
) -> tuple[Traffic, list[str]]:
    """The pod's traffic modes and their warnings; raises ``InjectionDenied``
    naming every combination that cannot work. ``asked``: the rows the pod set
    (its annotations); ``proxy_values``: the proxy's, None without a proxy."""
    refused = proxy_refused(asked) if proxy_values is None else None
    ports = tuple(_declared_ports(app))
    traffic = from_values(proxy_values or Values(), capture_values, asked, ports)
    denials, warnings = check(
        traffic,
        app=app,
        pod_security=pod_security,
        native=native,
        user_inits=user_inits,
    )
    denials = [refused, *denials] if refused else denials
    if denials:
        raise InjectionDenied("; ".join(denials))
    return traffic, warnings


def _declared_ports(app: Sequence[Mapping[str, Any]]) -> list[int]:
    found = []
    for container in app:
        for entry in _list(container.get("ports")):
            number = _mapping(entry).get("containerPort")
            if isinstance(number, int) and _mapping(entry).get("protocol", "TCP") == "TCP":
                found.append(number)
    return found


def from_values(
    proxy_values: Values, capture_values: Values, asked: Values, app_ports: tuple[int, ...] = ()
) -> Traffic:
    """The modes from the proxy's and the capture rows' values; ``asked``: the
    rows the pod itself set (its annotations); ``app_ports``: the app's TCP ports."""
    return Traffic(
        capture=proxy_values.get(proxy.CAPTURE) == "iptables",
        egress=proxy_values.get(proxy.EGRESS) == "http-proxy",
        exclude_ports=capture_values.get(capture.EXCLUDE_PORTS) or (),
        exclude_cidrs=capture_values.get(capture.EXCLUDE_CIDRS) or (),
        inbound_ports=capture_values.get(capture.INBOUND_PORTS),
        tcp_ports=proxy_values.get(proxy.CAPTURE_TCP_PORTS) or (),
        exclusions_asked=tuple(
            layout.PREFIX + (k.annotation or "")
            for k in (*capture.EXCLUSIONS, proxy.CAPTURE_TCP_PORTS)
            if k in asked
        ),
        app_ports=app_ports,
    )


def check(
    traffic: Traffic,
    *,
    app: Sequence[Mapping[str, Any]],
    pod_security: Mapping[str, Any],
    native: bool,
    user_inits: Sequence[str],
) -> tuple[list[str], list[str]]:
    """(denials, warnings) for the modes of ``traffic`` in this pod."""
    denials: list[str] = []
    warnings: list[str] = []
    if traffic.exclusions_asked and not traffic.capture:
        denials.append(
            f"{', '.join(traffic.exclusions_asked)} only apply with {layout.PREFIX}"
            "proxy-capture: iptables, which is not on for this pod; set it or remove them"
        )
    if traffic.capture:
        denials += _capture_denials(traffic, app, pod_security)
        if not native and user_inits:
            warnings.append(
                f"init containers {', '.join(user_inits)} run before the proxy (classic "
                "sidecars) with their outbound TCP captured: the connections they open will be "
                f"refused; use native sidecars, or run them as UID {layout.AGENT_UID}"
            )
    if traffic.egress:
        denials += _egress_denials(app)
    return denials, warnings


def proxy_refused(asked: Values) -> str | None:
    """The denial for a pod that asks for capture or egress and ``proxy: "false"``."""
    modes = []
    if asked.get(proxy.CAPTURE) == "iptables":
        modes.append(f"{layout.PREFIX}proxy-capture: iptables")
    if asked.get(proxy.EGRESS) == "http-proxy":
        modes.append(f"{layout.PREFIX}proxy-egress: http-proxy")
    if not modes:
        return None
    return (
        f"{' and '.join(modes)} need the proxy, and the pod says {layout.PREFIX}proxy: "
        '"false"; remove one or the other'
    )


def _capture_denials(
    traffic: Traffic, app: Sequence[Mapping[str, Any]], pod_security: Mapping[str, Any]
) -> list[str]:
    denials = []
    listeners = (layout.CAPTURE_OUTBOUND_PORT, layout.CAPTURE_INBOUND_PORT)
    ours = tuple(r for r in traffic.exclude_ports if any(p in r for p in listeners))
    if ours:
        denials.append(
            f"{layout.PREFIX}proxy-capture-exclude-ports: {format_port_ranges(ours)} includes "
            f"the proxy's capture listeners ({listeners[0]}, {listeners[1]}); exclude only "
            "ports of the app or its peers"
        )
    clash = tuple(
        r for r in traffic.inbound_ports or () if any(_overlap(r, s) for s in capture.SIDECAR_PORTS)
    )
    if clash:
        denials.append(
            f"{layout.PREFIX}proxy-capture-include-inbound-ports: {format_port_ranges(clash)} "
            f"overlaps the sidecars' own ports ({format_port_ranges(capture.SIDECAR_PORTS)}), "
            "which are never captured; list the app's ports"
        )
    for container in app:
        sc = _mapping(container.get("securityContext"))
        if sc.get("runAsUser", pod_security.get("runAsUser")) == layout.AGENT_UID:
            denials.append(
                f"container {container.get('name')} runs as UID {layout.AGENT_UID}, the "
                "proxy's: its connections cannot be told apart from the proxy's and would "
                "not be captured; run the app as another user"
            )
    return denials


def _egress_denials(app: Sequence[Mapping[str, Any]]) -> list[str]:
    denials = []
    for container in app:
        names = {_mapping(e).get("name") for e in _list(container.get("env"))}
        taken = sorted(n for n in EGRESS_VARIABLES if n in names)
        if taken:
            denials.append(
                f"container {container.get('name')} sets {', '.join(taken)} itself, and "
                f"{layout.PREFIX}proxy-egress: http-proxy sets them; remove them from the "
                "container or drop proxy-egress"
            )
    return denials


def cluster_suffixes(domain: str) -> tuple[str, ...]:
    """NO_PROXY's in-cluster name suffixes for the cluster domain ``domain``."""
    return (".svc", f".svc.{domain}", f".{domain}")


# NO_PROXY as egress_env writes it, up to the cluster's suffixes.
NO_PROXY_HEAD = f"localhost,127.0.0.1,::1,$({POD_IPS_VARIABLE}),$(KUBERNETES_SERVICE_HOST),"


def egress_env(domain: str = DEFAULT_CLUSTER_DOMAIN) -> list[dict[str, Any]]:
    """The app containers' proxy variables: HTTP and HTTPS through the proxy,
    except localhost, the pod's own addresses, the API server and in-cluster
    names of the cluster domain ``domain`` (both spellings: curl reads only the
    lowercase ones)."""
    no_proxy = NO_PROXY_HEAD + ",".join(cluster_suffixes(domain))
    values = {"HTTP_PROXY": FORWARD_PROXY, "HTTPS_PROXY": FORWARD_PROXY, "NO_PROXY": no_proxy}
    env: list[dict[str, Any]] = [
        {"name": POD_IPS_VARIABLE, "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}}
    ]
    env += [{"name": name, "value": values[name]} for name in PROXY_VARIABLES]
    env += [{"name": name.lower(), "value": values[name]} for name in PROXY_VARIABLES]
    return env


def without_egress_env(container: Any, names: Iterable[str]) -> Any:
    """``container`` without the egress variables ``names`` (a status lists them),
    where they are exactly what ``egress_env`` adds: another container's own
    ``HTTP_PROXY`` stays."""
    wanted = EGRESS_VARIABLES & set(names)
    if (
        not wanted
        or not isinstance(container, Mapping)
        or not isinstance(container.get("env"), list)
    ):
        return container
    kept = [e for e in container["env"] if not _added(e, wanted)]
    if len(kept) == len(container["env"]):
        return container
    result = dict(container)
    if kept:
        result["env"] = kept
    else:
        del result["env"]
    return result


def _added(entry: Any, names: AbstractSet[str]) -> bool:
    """Whether an env entry is one ``egress_env`` adds (as the API server
    stores it: a fieldRef gets its ``apiVersion`` filled in)."""
    entry = _mapping(entry)
    name = entry.get("name")
    if name not in names:
        return False
    if name == POD_IPS_VARIABLE:
        field_ref = _mapping(_mapping(entry.get("valueFrom")).get("fieldRef"))
        return field_ref.get("fieldPath") == "status.podIPs"
    if "valueFrom" in entry:
        return False
    value = entry.get("value")
    if name.upper() == "NO_PROXY":  # whatever the cluster domain was when it was added
        return isinstance(value, str) and value.startswith(NO_PROXY_HEAD)
    ours = {e["name"]: e.get("value") for e in egress_env()}
    return bool(value == ours[name])


def describe(traffic: Traffic) -> dict[str, Any]:
    """The traffic plan, for ``explain``."""
    plan: dict[str, Any] = {"capture": "iptables" if traffic.capture else "none"}
    if traffic.capture:
        plan["captureInit"] = (
            f"{layout.CAPTURE_INIT_CONTAINER}, first of the pod: user 0 with NET_ADMIN and "
            "NET_RAW only (the namespace's Pod Security level must be privileged)"
        )
        plan["outbound"] = (
            "every TCP connection the app opens -> the proxy on 127.0.0.1:"
            f"{layout.CAPTURE_OUTBOUND_PORT}, original destination kept"
        )
        plan["outboundNotCaptured"] = _not_captured(traffic)
        if traffic.tcp_ports:
            plan["outboundPlainTcp"] = (
                f"ports {format_port_ranges(traffic.tcp_ports)}: passed through as TCP at "
                "once, without looking for HTTP or TLS"
            )
        plan["inbound"] = _inbound(traffic)
    plan["egress"] = "none"
    if traffic.egress:
        plan["egress"] = {
            "HTTP_PROXY": FORWARD_PROXY,
            "HTTPS_PROXY": FORWARD_PROXY,
            "NO_PROXY": "localhost, the pod's addresses, the API server, "
            + ", ".join(cluster_suffixes(traffic.cluster_domain)),
        }
    return plan


def _not_captured(traffic: Traffic) -> list[str]:
    lines = [
        "loopback and the pod's own addresses",
        f"the proxy's own connections (UID {layout.AGENT_UID})",
        "DNS (TCP port 53; UDP is never captured)",
    ]
    if traffic.exclude_ports:
        lines.append(f"ports {format_port_ranges(traffic.exclude_ports)}")
    if traffic.exclude_cidrs:
        lines.append(", ".join(str(n) for n in traffic.exclude_cidrs))
    return lines


def _inbound(traffic: Traffic) -> dict[str, str]:
    if traffic.inbound_ports == ():
        return {"every port": "straight to the app (not captured)"}
    to_proxy = f"-> the proxy on {layout.CAPTURE_INBOUND_PORT} -> the app on the same port"
    excluded = (*capture.SIDECAR_PORTS, *traffic.exclude_ports)
    routes: dict[str, str] = {}
    for port in dict.fromkeys(traffic.app_ports):
        captured = not any(port in r for r in excluded) and (
            traffic.inbound_ports is None or any(port in r for r in traffic.inbound_ports)
        )
        routes[str(port)] = to_proxy if captured else "straight to the app (not captured)"
    if traffic.inbound_ports is None:
        routes["every other port"] = f"{to_proxy}, but {format_port_ranges(excluded)}"
    else:
        routes[format_port_ranges(traffic.inbound_ports)] = to_proxy
    return routes


def _overlap(a: PortRange, b: PortRange) -> bool:
    return a.first <= b.last and b.first <= a.last


def _mapping(value: Any) -> Mapping[str, Any]:
    if type(value) is dict:  # decoded JSON: no Mapping ABC check
        return value
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
