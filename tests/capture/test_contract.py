"""The capture rows arrive: what a pod's annotations (or its profile) ask for is
what ``sidecar capture`` reads from the init container the injector renders,
and the proxy container is told to serve captured traffic. No namespace needed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from contract import capture, proxy
from contract.layout import CAPTURE_INIT_CONTAINER, PROXY_CONTAINER
from injector.core.model import NamespaceInfo
from injector.core.render import render
from injector.core.settings import Settings
from injector.core.specs import settings_from_spec
from sidecar.capture.settings import load
from tests import kubelet
from tests.capture.world import container, rendered


def render_pod(annotations: dict[str, str]) -> dict[str, Any]:
    pod = {
        "metadata": {
            "name": "shop",
            "annotations": {"sidecar.example.io/inject": "true"}
            | {"sidecar.example.io/" + k: v for k, v in annotations.items()},
        },
        "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
    }
    return dict(render(pod, NamespaceInfo("shop"), Settings()).pod)


ASKED = {k.annotation or "": k.example or "" for k in capture.EXCLUSIONS}


def agent_settings(spec: dict[str, Any]) -> Any:
    init = container(spec, CAPTURE_INIT_CONTAINER)
    assert init["command"][:2] == ["sidecar", "capture"]
    return load(init["command"][2:], kubelet.container_env(init, {}))


def test_every_capture_annotation_reaches_sidecar_capture() -> None:
    settings = agent_settings(rendered({"proxy-capture": "iptables", **ASKED}))
    for knob in capture.EXCLUSIONS:
        assert getattr(settings, knob.field) == knob.parse(knob.example or ""), knob.field
    env = {
        e["name"]: e.get("value")
        for e in container(rendered(ASKED | {"proxy-capture": "iptables"}), PROXY_CONTAINER)["env"]
    }
    assert env[proxy.CAPTURE.env or ""] == "iptables"


def test_a_profile_turns_capture_on_with_its_exclusions() -> None:
    settings = settings_from_spec(
        {
            "profiles": {
                "default": {
                    "proxy": {
                        "capture": "iptables",
                        "egress": "http-proxy",
                        "captureExcludePorts": "5432",
                        "captureExcludeCidrs": "169.254.169.254",
                    }
                }
            }
        }
    )
    pod = {
        "metadata": {"name": "shop", "annotations": {"sidecar.example.io/inject": "true"}},
        "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
    }
    result = render(pod, NamespaceInfo("shop"), settings)
    spec = dict(result.pod["spec"])
    agent = agent_settings(spec)
    assert [str(r) for r in agent.capture_exclude_ports] == ["5432"]
    assert [str(n) for n in agent.capture_exclude_cidrs] == ["169.254.169.254/32"]
    app = container(spec, "app")
    assert {e["name"] for e in app["env"]} >= {"HTTP_PROXY", "https_proxy", "NO_PROXY"}


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"proxy-capture": "iptables"}, [CAPTURE_INIT_CONTAINER, PROXY_CONTAINER]),
        ({"proxy-egress": "http-proxy"}, [PROXY_CONTAINER]),
        ({"proxy-capture": "none", "proxy-upstream": "http://a:80"}, [PROXY_CONTAINER]),
    ],
)
def test_the_capture_init_container_is_first_and_only_with_capture(
    annotations: dict[str, str], expected: list[str]
) -> None:
    spec = rendered(annotations)
    names = [c["name"] for c in spec["initContainers"]]
    assert names == expected


def test_reinjecting_a_stored_egress_pod_takes_out_exactly_what_was_added() -> None:
    first = render_pod({"proxy-egress": "http-proxy"})
    stored = copy.deepcopy(first)  # as the API server stores it: defaults filled in
    for entry in container(stored["spec"], "app")["env"]:
        if "valueFrom" in entry:
            entry["valueFrom"]["fieldRef"]["apiVersion"] = "v1"
    again = render(stored, NamespaceInfo("shop"), Settings())
    names = [e["name"] for e in container(dict(again.pod["spec"]), "app")["env"]]
    assert names == [e["name"] for e in container(first["spec"], "app")["env"]]
