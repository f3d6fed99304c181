"""``explain`` says why: the mode, each role on or off, and where every value
comes from (the pod's annotation, the profile, the agent's default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from injector.cli.main import main

P = "sidecar.example.io/"


def explain(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    annotations: dict[str, str],
    *args: str,
    kind: str = "Pod",
    profile: dict[str, Any] | None = None,
) -> dict[str, Any]:
    pod_spec = {"containers": [{"name": "app", "image": "a", "ports": [{"containerPort": 8080}]}]}
    template = {
        "metadata": {"annotations": {P + "inject": "true", **annotations}},
        "spec": pod_spec,
    }
    if kind == "Pod":
        document: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", **template}
        document["metadata"]["name"] = "p"
    else:
        pod_spec["restartPolicy"] = "Never"
        document = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                    "spec": {"template": template}}  # fmt: skip
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump(document))
    config = tmp_path / "config.yaml"
    spec = {"vault": {"address": "http://vault:8200", "role": "app"}, **(profile or {})}
    config.write_text(yaml.safe_dump({"profiles": {"default": spec}}))
    assert main(["explain", "-f", str(path), "--config", str(config), *args]) == 0
    report = yaml.safe_load(capsys.readouterr().out)
    assert report["injected"] is True, report
    return report["reasons"]  # type: ignore[no-any-return]


def test_mode_from_the_cluster_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mode = explain(tmp_path, capsys, {}, "--cluster-version", "1.31")["mode"]
    assert mode == (
        "native sidecars: the pod and profile default leave it to the cluster (auto), "
        "and Kubernetes 1.31 has them (1.31: --cluster-version 1.31)"
    )


def test_mode_from_the_pod_and_from_the_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    by_pod = explain(tmp_path, capsys, {P + "native-sidecars": "false"})["mode"]
    assert by_pod == f'classic sidecars: the pod says {P}native-sidecars: "false"'
    by_profile = explain(tmp_path, capsys, {}, profile={"nativeSidecars": "false"})["mode"]
    assert by_profile == "classic sidecars: profile default says nativeSidecars: false"


def test_roles_on_and_off_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roles = explain(tmp_path, capsys, {})["roles"]
    assert roles == {
        "proxy": "on: no other role is asked for: the proxy is the default role",
        "secrets": f"off: no {P}secret-NAME annotation",
        "config": f"off: no {P}config-source annotation",
        "logs": f"off: no {P}logs-path annotation",
    }
    roles = explain(tmp_path, capsys, {P + "secret-db": "kv/db", P + "secret-api": "kv/api"})[
        "roles"
    ]
    assert roles["proxy"] == "off: secrets asked for and no proxy-* annotation is set"
    assert roles["secrets"] == f"on: {P}secret-NAME for api, db"
    roles = explain(
        tmp_path, capsys, {P + "config-source": "configmap:c", P + "proxy-retries": "1"}
    )["roles"]
    assert roles["proxy"] == f"on: {P}proxy-retries set"
    assert roles["config"] == f"on: {P}config-source: configmap:c"
    roles = explain(tmp_path, capsys, {P + "logs-path": "/var/log/shop"})["roles"]
    assert roles["proxy"] == "off: logs asked for and no proxy-* annotation is set"
    assert roles["logs"] == f"on: {P}logs-path: /var/log/shop"


def test_every_value_says_where_it_comes_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = explain(
        tmp_path,
        capsys,
        {P + "proxy-timeout": "2s", P + "secret-db": "kv/db", P + "proxy": "true"},
        profile={"proxy": {"retries": 4}, "image": "registry.example.io/s:2"},
    )["values"]
    assert values["proxy.timeout"] == f"2s: the pod's {P}proxy-timeout"
    assert values["proxy.retries"] == "4: profile default (proxy.retries)"
    assert values["proxy.max-connections"] == (
        f"1024: the agent's default (neither {P}proxy-max-connections nor profile default sets it)"
    )
    assert values["proxy.inbound-port"] == "8080: the first containerPort of the app"
    assert (
        values["proxy.image"] == "registry.example.io/s:2: profile default (images.proxy or image)"
    )
    assert values["secrets.vault-addr"] == "http://vault:8200: profile default (vault.address)"
    assert values["secrets.vault-auth-path"] == (
        f"kubernetes: the agent's default (neither {P}secrets-auth-path nor profile default "
        "sets it)"
    )
    assert values["secrets.mode"] == "both: profile default (secretsMode)"


def test_a_vault_ca_is_passed_and_explained_without_its_pem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    vault = {"address": "https://vault:8200", "role": "app", "caBundle": ca * 2}
    values = explain(tmp_path, capsys, {P + "secret-db": "kv/db"}, profile={"vault": vault})[
        "values"
    ]
    assert values["secrets.vault-cacert-pem"] == (
        "2 PEM certificate(s): profile default (vault.caBundle)"
    )


def test_a_job_says_why_it_completes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reasons = explain(
        tmp_path, capsys, {P + "secret-db": "kv/db"}, "--cluster-version", "1.28", kind="Job"
    )
    assert reasons["job"].startswith("the pod belongs to a Job (its ownerReferences)")
    assert reasons["values"]["secrets.mode"] == (
        "init: the pod belongs to a Job and runs classic sidecars, so init only"
    )
