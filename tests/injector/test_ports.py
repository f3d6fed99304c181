"""Port, probe and lifecycle-hook collisions across every container of the pod,
against the ports of the roles that are on (``injector.core.ports``), through
``render`` (the webhook and ``inject`` share it: test_cli_webhook_agree.py)."""

from __future__ import annotations

from typing import Any

import pytest

from injector.core.model import NamespaceInfo
from injector.core.render import render
from injector.core.specs import settings_from_spec
from injector.errors import NameCollision
from tests.golden_tool import BASE_SETTINGS

SETTINGS = settings_from_spec(BASE_SETTINGS)
P = "sidecar.example.io/"
PROXY = {P + "inject": "true", P + "proxy-upstream": "http://payments:8080"}
SECRETS = {P + "inject": "true", P + "secret-db": "database/creds/app"}
CONFIG = {P + "inject": "true", P + "config-source": "configmap:app"}
LOGS = {P + "inject": "true", P + "logs-path": "/var/log/app"}


def app(name: str = "app", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": f"example/{name}:1", **fields}


def pod(annotations: dict[str, str], *containers: Any, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "annotations": annotations},
        "spec": {"containers": list(containers) or [app()], **spec},
    }


def denial(p: dict[str, Any]) -> str:
    with pytest.raises(NameCollision) as caught:
        render(p, NamespaceInfo("default"), SETTINGS)
    return str(caught.value)


def port(number: int, **more: Any) -> dict[str, Any]:
    return {"containerPort": number, **more}


ISTIO_READY = {"httpGet": {"path": "/app-health/app/readyz", "port": 15020}}


@pytest.mark.parametrize(
    ("p", "message"),
    [
        (pod(SECRETS, app(ports=[port(15021)])),
         "container app declares port 15021, where the secrets agent listens: move it to "
         "another port (the sidecars of this pod use 15021)"),
        (pod(CONFIG, app(ports=[port(15022)])),
         "container app declares port 15022, where the config agent listens"),
        (pod(PROXY, app(), initContainers=[app("shipper", restartPolicy="Always",
                                               ports=[port(15020)])]),
         "native sidecar (init container) shipper declares port 15020, where the proxy agent "
         "listens"),
        (pod(PROXY, app(), initContainers=[app("migrate", ports=[port(15000)])]),
         "init container migrate declares port 15000, where the proxy's Envoy admin listens"),
        (pod({**PROXY, P + "containers": "app"}, app(), app("metrics", ports=[port(15020)])),
         "container metrics declares port 15020, where the proxy agent listens"),
        (pod(PROXY, app(readinessProbe=ISTIO_READY)),
         "container app: readinessProbe.httpGet targets port 15020, where the proxy agent "
         "answers, not the app: point it at the app's own port"),
        (pod(SECRETS, app(ports=[port(15021, name="istio-health")],
                          livenessProbe={"tcpSocket": {"port": "istio-health"}})),
         "container app: livenessProbe.tcpSocket targets port 15021"),
        (pod(CONFIG, app(lifecycle={"preStop": {"httpGet": {"path": "/x", "port": 15022}}})),
         "container app: lifecycle.preStop.httpGet targets port 15022, where the config agent"),
        (pod(PROXY, app(startupProbe={"grpc": {"port": 15006}})),
         "container app: startupProbe.grpc targets port 15006, where the proxy's inbound "
         "listener answers"),
        (pod(LOGS, app(ports=[port(15024)])),
         "container app declares port 15024, where the logs agent listens"),
    ],
    ids=["secrets-15021", "config-15022", "user-native-sidecar", "user-init", "unselected",
         "istio-probe", "named-port-probe", "prestop-hook", "grpc-probe", "logs-15024"],
)  # fmt: skip
def test_a_clash_is_denied_naming_container_port_and_fix(p: dict[str, Any], message: str) -> None:
    assert message in denial(p)


def test_every_clash_is_named_in_one_message() -> None:
    p = pod(
        {**PROXY, **SECRETS},
        app(ports=[port(15001)], readinessProbe=ISTIO_READY),
        app("b", ports=[port(15021)]),
    )
    message = denial(p)
    assert "container app declares port 15001" in message
    assert "container app: readinessProbe.httpGet targets port 15020" in message
    assert "container b declares port 15021" in message
    assert message.endswith("(the sidecars of this pod use 15000, 15001, 15006, 15020 and 15021)")


@pytest.mark.parametrize(
    "p",
    [
        pod(PROXY, app(ports=[port(15021)])),  # the secrets role is off
        pod(SECRETS, app(ports=[port(15020)], readinessProbe=ISTIO_READY)),  # no proxy
        pod(PROXY, app(ports=[port(15020, protocol="UDP")])),  # Envoy binds TCP
        pod(PROXY, app(ports=[port(8080)], readinessProbe={"httpGet": {"port": 8080}})),
        pod(PROXY, app(livenessProbe={"httpGet": {"port": "nowhere"}})),  # unresolved name
    ],
    ids=["other-role", "no-proxy", "udp", "own-port", "unknown-name"],
)
def test_no_clash_is_admitted(p: dict[str, Any]) -> None:
    assert render(p, NamespaceInfo("default"), SETTINGS).injected


def test_reinjection_does_not_clash_with_our_own_containers() -> None:
    first = render(pod({**PROXY, **SECRETS, **CONFIG}), NamespaceInfo("default"), SETTINGS)
    again = render(first.pod, NamespaceInfo("default"), SETTINGS)
    assert again.pod == first.pod
