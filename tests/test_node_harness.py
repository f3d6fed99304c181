"""The e2e node harness's pure parts: image archives, configuration, diagnostics.

The node itself is exercised by e2e/ (make e2e-local); these run anywhere.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

from e2e import cgroups, hoststate, node, node_config, oci, preflight


def test_oci_archive_is_a_layout_containerd_can_import(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF not really")
    image = oci.Image(
        name="localhost/e2e/tool:1", files={"/tool": (binary, 0o755)}, entrypoint=["/tool"]
    )
    archive = oci.write_archive(image, tmp_path / "tool.tar")
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(members["index.json"])
    (entry,) = index["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/e2e/tool:1"
    for name, blob in members.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(blob).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(members["blobs/sha256/" + entry["digest"].split(":")[1]])
    config = json.loads(members["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"]["Entrypoint"] == ["/tool"]
    layer = members["blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1]]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    # Deterministic: the same input gives the same archive.
    again = oci.write_archive(image, tmp_path / "again.tar")
    assert again.read_bytes() == archive.read_bytes()


def _layout(tmp_path: Path) -> node_config.Layout:
    return node_config.Layout(
        root=tmp_path,
        cgroup_root="/sidecar-e2e-abc",
        runc="/usr/sbin/runc",
        cni_bin_dir="/usr/lib/cni",
    )


def test_node_configuration_files_parse_and_keep_host_state_alone(tmp_path: Path) -> None:
    files = node_config.write_all(_layout(tmp_path), "/k/kubeconfig", "/k/ca.crt")
    containerd = tomllib.loads(files["containerd"].read_text())
    runtime = containerd["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["cni"]["conf_dir"] == str(tmp_path / "etc" / "cni")
    kubelet = yaml.safe_load(files["kubelet"].read_text())
    assert kubelet["cgroupRoot"] == "/sidecar-e2e-abc"
    assert kubelet["failCgroupV1"] is False
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    proxy = yaml.safe_load(files["kube-proxy"].read_text())
    assert proxy["conntrack"]["maxPerCore"] == 0  # a global sysctl otherwise
    assert proxy["iptables"]["masqueradeAll"] is True
    cni = json.loads(files["cni"].read_text())
    assert cni["plugins"][0]["ipam"]["ranges"] == [[{"subnet": node_config.POD_CIDR}]]


@pytest.mark.parametrize(
    ("log", "cause"),
    [
        (
            "OCI runtime create failed: runc create failed: unable to start container process: "
            "can't get final child's PID from pipe: EOF",
            "CAP_SYS_RESOURCE",
        ),
        ('failed to find plugin "bridge" in path [/usr/lib/cni]', "containernetworking-plugins"),
        ("listen tcp 0.0.0.0:10250: bind: address already in use", "port"),
    ],
)
def test_known_failures_name_their_cause_and_fix(log: str, cause: str) -> None:
    assert cause in node.hint(log)


def test_unknown_failures_claim_no_cause() -> None:
    assert node.hint("everything is fine") == ""


def test_preflight_names_the_package_of_each_missing_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 0)
    monkeypatch.setattr(preflight.shutil, "which", lambda name, path=None: None)
    monkeypatch.setattr(preflight, "CNI_DIRS", ("/nonexistent",))
    found = "\n".join(preflight.problems())
    for fix in (
        "iptables not found: apt-get install iptables",
        "runc not found: apt-get install runc",
        "nsenter not found: apt-get install util-linux",
        "apt-get install containernetworking-plugins",
    ):
        assert fix in found


def test_preflight_without_root_says_how_to_do_without_the_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    (problem,) = preflight.problems()
    assert "needs root" in problem
    assert "SIDECAR_E2E_NODE=0" in problem


def test_cgroup_roots_outside_the_sandbox_prefix_are_refused() -> None:
    for root in ("/", "/kubepods", "/sidecar-e2e-x/../y", "sidecar-e2e-a/b"):
        with pytest.raises(cgroups.CgroupError):
            cgroups._relative(root)


def test_host_differences_list_what_changed_and_ignore_kernel_counters() -> None:
    before = {
        "links": ["lo"],
        "rules": [],
        "mounts": ["/"],
        "cgroups": [],
        "paths": [],
        "sysctls": {"vm/overcommit_memory": "0", "fs/file-nr": "1"},
    }
    after = {
        **before,
        "links": ["lo", "cni0"],
        "sysctls": {"vm/overcommit_memory": "1", "fs/file-nr": "1"},
    }
    assert hoststate.differences(before, after) == [
        "links: added cni0",
        "sysctl vm/overcommit_memory: '0' -> '1'",
    ]
    assert hoststate.VOLATILE.search("fs/file-nr")
    assert not hoststate.VOLATILE.search("vm/overcommit_memory")
