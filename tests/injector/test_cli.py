"""``sidecar-injector inject | explain | annotations`` through ``main``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from injector.annotations import markdown_table
from injector.cli import main

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {sidecar.example.io/injection: enabled}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: web:1, ports: [{containerPort: 8080}]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: report}
spec:
  template:
    metadata:
      annotations:
        sidecar.example.io/inject: "true"
        sidecar.example.io/config-source: configmap:report
        sidecar.example.io/confg-path: /etc/report
    spec:
      restartPolicy: Never
      containers: [{name: report, image: report:1}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
"""


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(MANIFEST)
    return path


def test_inject_templates_and_passes_others(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inject", "-f", str(manifest), "--cluster-version", "1.28"]) == 0
    out, err = capsys.readouterr()
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["Namespace", "Deployment", "Job", "Service"]
    web = docs[1]["spec"]["template"]["spec"]
    assert [c["name"] for c in web["containers"]] == ["sidecar-proxy", "web"]
    job = docs[2]["spec"]["template"]["spec"]
    assert [c["name"] for c in job["initContainers"]] == ["sidecar-config-init"]
    assert [c["name"] for c in job["containers"]] == ["report"]
    assert docs[3] == yaml.safe_load(MANIFEST.split("---\n")[3])
    assert "warning: Job/report: unknown annotation sidecar.example.io/confg-path" in err
    assert "did you mean sidecar.example.io/config-path?" in err


def test_inject_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(MANIFEST))
    assert main(["inject", "-f", "-"]) == 0
    assert "sidecar-proxy" in capsys.readouterr().out


def test_invalid_annotation_exits_non_zero_without_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
        '    sidecar.example.io/inject: "true"\n'
        '    sidecar.example.io/proxy-timeout: "soon"\n'
        "spec:\n  containers: [{name: a, image: a}]\n"
    )
    assert main(["inject", "-f", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "error: Pod/p: annotation sidecar.example.io/proxy-timeout: 'soon'" in err


def test_unreadable_and_invalid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inject", "-f", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [")
    assert main(["explain", "-f", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_explain(manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "-f", str(manifest), "--cluster-version", "1.30"]) == 0
    reports = list(yaml.safe_load_all(capsys.readouterr().out))
    web, job = reports
    assert web["object"] == "Deployment/web"
    assert web["injected"] is True
    assert web["why"] == "namespace shop has injection enabled"
    assert web["settings"]["mode"] == "native sidecars"
    assert job["settings"]["job"] == "native sidecars: they stop when the app exits"
    assert job["roles"] == ["config"]


def test_explain_says_why_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: true\n"
        "  containers: [{name: a, image: a}]\n"
    )
    assert (
        main(
            [
                "explain",
                "-f",
                str(path),
                "--namespace-label",
                "sidecar.example.io/injection=enabled",
            ]
        )
        == 0
    )
    report = yaml.safe_load(capsys.readouterr().out)
    assert report["injected"] is False
    assert report["why"].startswith("host-network:")


def test_annotations_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["annotations", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown_table()


def test_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("profiles: {default: {resources: {proxy: {limits: {cpu: lots}}}}}\n")
    pod = tmp_path / "p.yaml"
    pod.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n")
    assert main(["inject", "-f", str(pod), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "profile default.resources.proxy.limits.cpu: 'lots' is not a CPU quantity" in err


def test_serve_refuses_a_busy_address(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--listen", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"--listen 127.0.0.1:{port}: cannot bind" in err
    assert "Traceback" not in err


def test_serve_refuses_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--listen", "127.0.0.1"]) == 2
    assert "--listen" in capsys.readouterr().err
