"""The capture init container as the injector renders it, run as a kubelet
runs it: user 0 with only NET_ADMIN and NET_RAW, read-only root filesystem, no
privilege escalation, in the pod's network namespace. It installs the rules the
pod's annotations ask for and exits 0; run again (an init container restart)
it leaves the same rules."""

from __future__ import annotations

import copy

from tests.capture.world import CAPTURE_INIT, World, container, rendered

EXPECTED_V4 = [
    ":SIDECAR_INBOUND - [0:0]",
    ":SIDECAR_OUTPUT - [0:0]",
    "-A PREROUTING -p tcp -j SIDECAR_INBOUND",
    "-A OUTPUT -p tcp -j SIDECAR_OUTPUT",
    "-A SIDECAR_INBOUND -p tcp -m multiport --dports 15000:15006,15020:15024,5432 -j RETURN",
    "-A SIDECAR_INBOUND -p tcp -m multiport --dports 8080,9090 -j REDIRECT --to-ports 15003",
    "-A SIDECAR_OUTPUT -m owner --uid-owner 1337 -j RETURN",
    "-A SIDECAR_OUTPUT -o lo -j RETURN",
    "-A SIDECAR_OUTPUT -p tcp -m tcp --dport 53 -j RETURN",
    "-A SIDECAR_OUTPUT -d 169.254.169.254/32 -j RETURN",
    "-A SIDECAR_OUTPUT -p tcp -m multiport --dports 5432 -j RETURN",
    "-A SIDECAR_OUTPUT -p tcp -j REDIRECT --to-ports 15002",
]
ANNOTATIONS = {
    "proxy-capture-exclude-ports": "5432",
    "proxy-capture-exclude-cidrs": "169.254.169.254,fd00:dead::/32",
    "proxy-capture-include-inbound-ports": "8080,9090",
}


def ours(saved: str) -> list[str]:
    return [line for line in saved.splitlines() if "SIDECAR_" in line]


def test_init_container_installs_ipv4_and_ipv6_rules_and_is_idempotent(world: World) -> None:
    first = world.run_init(ANNOTATIONS)
    assert first.returncode == 0, first.stderr
    assert '"msg": "capture rules installed"' in first.stderr
    assert '"families": ["IPv4", "IPv6"]' in first.stderr
    v4, v6 = world.save(4), world.save(6)
    assert ours(v4) == EXPECTED_V4
    assert "-A SIDECAR_OUTPUT -d fd00:dead::/32 -j RETURN" in ours(v6)
    assert "169.254.169.254" not in v6
    assert "-A SIDECAR_OUTPUT -m owner --uid-owner 1337 -j RETURN" in ours(v6)

    again = world.run_init(ANNOTATIONS)
    assert again.returncode == 0, again.stderr
    assert (world.save(4), world.save(6)) == (v4, v6)


def test_rerun_with_other_settings_replaces_the_rules(world: World) -> None:
    assert world.run_init(ANNOTATIONS).returncode == 0
    changed = world.run_init({"proxy-capture-include-inbound-ports": "none"})
    assert changed.returncode == 0, changed.stderr
    rules = ours(world.save(4))
    assert rules.count("-A OUTPUT -p tcp -j SIDECAR_OUTPUT") == 1
    assert not [r for r in rules if r.startswith("-A SIDECAR_INBOUND")]
    assert "5432" not in "\n".join(rules)


def test_without_net_admin_it_fails_and_says_why(world: World) -> None:
    init = copy.deepcopy(container(rendered({"proxy-capture": "iptables"}), CAPTURE_INIT))
    init["securityContext"]["capabilities"]["add"] = ["NET_RAW"]
    result = world.run_init(init=init)
    assert result.returncode == 1
    assert result.stderr.startswith("sidecar capture: iptables-save -t nat failed")
    assert "NET_ADMIN and NET_RAW" in result.stderr
    assert "Traceback" not in result.stderr
    assert "SIDECAR_" not in world.save(4)


def test_as_the_proxy_user_it_cannot_change_anything(world: World) -> None:
    init = copy.deepcopy(container(rendered({"proxy-capture": "iptables"}), CAPTURE_INIT))
    init["securityContext"].update(runAsUser=1337, runAsGroup=1337, runAsNonRoot=True)
    result = world.run_init(init=init)
    assert result.returncode == 1
    assert "NET_ADMIN and NET_RAW" in result.stderr
    assert "SIDECAR_" not in world.save(4)
