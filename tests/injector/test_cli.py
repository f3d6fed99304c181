"""``sidecar-injector inject | explain | annotations`` through ``main``."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest
import yaml

from contract.reference import annotation_table as markdown_table
from injector.cli.main import main

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
    assert web["why"] == "namespace shop is labelled sidecar.example.io/injection: enabled"
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


def test_annotations_plain_text_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["annotations"]) == 0
    out = capsys.readouterr().out
    assert out != markdown_table()
    assert "|" not in out.splitlines()[0]
    assert "sidecar.example.io/proxy-timeout\n    route timeout" in out


def _help_texts(parser: argparse.ArgumentParser, where: str) -> list[tuple[str, str]]:
    texts = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                texts.append((f"{where} {choice.dest}", str(choice.help)))
            for name, sub in action.choices.items():
                texts += _help_texts(sub, f"{where} {name}")
            continue
        texts.append((f"{where} {'/'.join(action.option_strings)}", str(action.help)))
    return texts


def test_help_texts_are_sentences() -> None:
    from injector.cli.main import build_parser

    texts = _help_texts(build_parser(), "sidecar-injector")
    assert len(texts) > 30
    for where, text in texts:
        assert text[0].isupper(), f"{where}: {text!r}"
        assert text.endswith("."), f"{where}: {text!r}"


def test_offline_defaults_to_native_sidecars_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(MANIFEST.split("---\n")[2])
    assert main(["explain", "-f", str(path)]) == 0
    report = yaml.safe_load(capsys.readouterr().out)
    assert report["settings"]["mode"] == "native sidecars"
    assert (
        "Kubernetes 1.29 has them (1.29: assumed, as no --cluster-version is given"
        in (report["reasons"]["mode"])
    )
    assert main(["explain", "-f", str(path), "--cluster-version", "1.28"]) == 0
    report = yaml.safe_load(capsys.readouterr().out)
    assert report["settings"]["mode"] == "classic sidecars"
    assert report["reasons"]["mode"].endswith(
        "Kubernetes 1.28 is older than 1.29 (1.28: --cluster-version 1.28)"
    )


def test_config_takes_the_shipped_sidecarprofile(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = Path(__file__).resolve().parents[2] / "manifests/base/sidecarprofile-default.yaml"
    assert main(["inject", "-f", str(manifest), "--config", str(shipped)]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    proxy = docs[1]["spec"]["template"]["spec"]["initContainers"][0]
    assert proxy["name"] == "sidecar-proxy"
    assert proxy["image"] == "ghcr.io/sidecar-injector/sidecar:0.1.0"
    assert proxy["resources"]["requests"]["memory"] == "64Mi"  # the profile's, not built-in
