"""The capture rows arrive: what a pod's annotations (or its profile) ask for is
what ``sidecar capture`` reads from the init container the injector renders,
and the proxy container is told to serve captured traffic. No namespace needed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from contract import capture, proxy
from contract.layout import CAPTURE_INIT_CONTAINER, PROXY_CONTAINER
from contract.units import parse_port_ranges
from injector.cli.config_file import resolver_domain
from injector.cli.main import main as cli_main
from injector.core import traffic
from injector.core.model import NamespaceInfo
from injector.core.render import render
from injector.core.settings import Settings
from injector.core.specs import settings_from_spec
from injector.errors import ConfigError
from sidecar.capture.settings import load
from tests import kubelet
from tests.capture.world import container, rendered


def pod_document(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "shop",
            "annotations": {"sidecar.example.io/inject": "true"}
            | {"sidecar.example.io/" + k: v for k, v in annotations.items()},
        },
        "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
    }


def render_pod(annotations: dict[str, str]) -> dict[str, Any]:
    return dict(render(pod_document(annotations), NamespaceInfo("shop"), Settings()).pod)


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


def _no_proxy(spec: dict[str, Any]) -> list[str]:
    env = container(spec, "app")["env"]
    values = [e["value"] for e in env if e["name"] in ("NO_PROXY", "no_proxy")]
    assert len(values) == 2
    assert values[0] == values[1]
    return str(values[0]).split(",")


def test_no_proxy_names_the_cluster_domain_of_the_settings() -> None:
    pod = render_pod({"proxy-egress": "http-proxy"})
    assert _no_proxy(pod["spec"])[-3:] == [".svc", ".svc.cluster.local", ".cluster.local"]
    corp = settings_from_spec({"clusterDomain": "Corp.Example."})
    again = render(copy.deepcopy(pod), NamespaceInfo("shop"), corp)
    spec = dict(again.pod["spec"])
    # Re-injected under another domain: the old NO_PROXY is replaced, not kept beside.
    assert _no_proxy(spec)[-3:] == [".svc", ".svc.corp.example", ".corp.example"]
    assert [e["name"] for e in container(spec, "app")["env"]].count("NO_PROXY") == 1


@pytest.mark.parametrize("domain", ["", "cluster..local", "-corp.example", "a b", "x" * 254])
def test_a_cluster_domain_that_is_no_dns_domain_is_refused(domain: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a DNS domain such as cluster\.local"):
        settings_from_spec({"clusterDomain": domain})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("search shop.svc.corp.example svc.corp.example corp.example\nnameserver 10.0.0.10\n",
         "corp.example"),
        ("nameserver 10.0.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n",
         "cluster.local"),
        ("search example.org\nnameserver 192.0.2.1\n", None),  # not in a pod
        ("search svc.\n", None),
        ("", None),
    ],
)  # fmt: skip
def test_serve_reads_the_cluster_domain_from_its_pods_resolver(
    tmp_path: Path, text: str, expected: str | None
) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(text)
    assert resolver_domain(path) == expected
    assert resolver_domain(tmp_path / "missing") is None


def test_inject_takes_cluster_domain_from_the_command_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pod = pod_document({"proxy-egress": "http-proxy"})
    (tmp_path / "pod.yaml").write_text(json.dumps(pod))
    args = ["inject", "-f", str(tmp_path / "pod.yaml"), "--cluster-domain", "corp.example"]
    assert cli_main(args) == 0
    assert ".svc.corp.example,.corp.example" in capsys.readouterr().out
    assert cli_main([*args[:-1], "corp_example"]) == 2
    assert "cluster domain 'corp_example' is not a DNS domain" in capsys.readouterr().err


def test_explain_names_the_plain_tcp_ports_and_the_cluster_domain() -> None:
    plan = traffic.describe(
        traffic.Traffic(
            capture=True,
            egress=True,
            tcp_ports=parse_port_ranges("3306,25"),
            cluster_domain="corp.example",
        )
    )
    assert plan["outboundPlainTcp"].startswith("ports 25,3306: passed through as TCP at once")
    assert plan["egress"]["NO_PROXY"].endswith(".svc, .svc.corp.example, .corp.example")
    assert "outboundPlainTcp" not in traffic.describe(traffic.Traffic(capture=True))
