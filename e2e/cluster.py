"""A local Kubernetes control plane: etcd + kube-apiserver as local processes.

Like controller-runtime's envtest: real binaries (built from Go modules by
``e2e.build``), no kubelet, scheduler or controller-manager. Pods stay
Pending but what admission stored is the real thing.

    python -m e2e.cluster up          # start, print `export KUBECONFIG=...`
    python -m e2e.cluster env         # print the export line of the running one
    python -m e2e.cluster down        # stop it and remove its state
    python -m e2e.cluster run -- CMD  # start a private one, run CMD, stop; CMD's exit code

``up``/``down`` keep their state in ``~/.cache/sidecar-injector/cluster``
(``$SIDECAR_E2E_STATE`` overrides); ``run`` uses a fresh temporary directory,
so it never collides with an ``up`` cluster or a parallel run.

Everything listens on 127.0.0.1 on ephemeral ports. The admin kubeconfig uses
a client certificate with ``O=system:masters``; the same admin identity is
also available as a static bearer token (``--token-auth-file``) for clients
that want URL + token + CA. The API server runs the default admission plugins
(with MutatingAdmissionWebhook); the ``ServiceAccount`` plugin stays on, as in
a real cluster, so whoever creates a namespace here also creates its
``default`` ServiceAccount (no controller-manager does it): ``ensure_namespace``.
ConfigMaps and Secrets are not watch-cached, so compacting etcd makes watches
from older resourceVersions fail with 410 Gone (config-source tests need it).

Commands run under ``run`` see ``KUBECONFIG`` and ``SIDECAR_E2E_CLUSTER`` (the
path of ``cluster.json``: URLs, CA, token, etcd endpoint, kubectl path).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from e2e import build, pki

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
STARTUP_TIMEOUT = float(os.environ.get("SIDECAR_E2E_STARTUP_TIMEOUT", "120"))


class ClusterError(RuntimeError):
    """The control plane could not be started or reached; names the log to read."""


@dataclass(frozen=True)
class ClusterInfo:
    """What clients need, persisted as ``cluster.json`` in the state directory."""

    state_dir: str
    server: str
    kubeconfig: str
    ca_file: str
    client_cert_file: str
    client_key_file: str
    token: str
    etcd_url: str
    kubectl: str
    kubernetes_version: str
    etcd_version: str
    pids: dict[str, int]
    node: str = ""  # the node's name when the cluster has one (e2e.sandbox)

    @classmethod
    def load(cls, path: Path) -> ClusterInfo:
        return cls(**json.loads(path.read_text()))

    def save(self) -> Path:
        return pki.write(Path(self.state_dir) / "cluster.json", json.dumps(asdict(self)).encode())

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.load_cert_chain(self.client_cert_file, self.client_key_file)
        return context

    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": self.kubeconfig,
            "SIDECAR_E2E_CLUSTER": str(Path(self.state_dir) / "cluster.json"),
        }


def default_state_dir() -> Path:
    return Path(os.environ.get("SIDECAR_E2E_STATE", build.CACHE / "cluster"))


def free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent(sig: int = signal.SIGKILL) -> None:
    """preexec_fn: send the child sig when the process that started it dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, sig)


def _terminate_with_parent() -> None:
    _die_with_parent(signal.SIGTERM)


def _spawn(
    command: list[str], log: Path, *, detach: bool, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killed as a group
            preexec_fn=None if detach else _die_with_parent,  # noqa: PLW1509
        )


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead for our purposes.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return status != "Z"
    return True


def _owned_by(pid: int, state_dir: Path) -> bool:
    """Is pid still one of our control-plane processes (not a reused pid)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(state_dir) in cmdline


def _stop_group(pid: int, timeout: float = 15.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _alive(pid):
                return
            time.sleep(0.05)


def _poll(
    check: Callable[[], bool],
    what: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float = STARTUP_TIMEOUT,
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(
                f"{what}: the process exited with {process.returncode}; last lines of {log}:\n"
                f"{_log_tail(log)}"
            )
        try:
            if check():
                return
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ClusterError(
        f"{what}: not ready after {timeout:.0f}s (last error: {last or 'none'}); "
        f"last lines of {log}:\n{_log_tail(log)}"
    )


@dataclass(frozen=True)
class Listen:
    """Where the API server listens and what it advertises.

    Default: 127.0.0.1 on a free port. Inside the sandbox (``e2e.sandbox``),
    every address of its own network namespace on a given port, advertised at
    the node's address so that pods reach it through the ``kubernetes``
    Service, and calling kubelets at their InternalIP with the admin
    certificate."""

    bind: str = "127.0.0.1"
    port: int | None = None
    advertise: str = "127.0.0.1"
    node_name: str = ""


class ControlPlane:
    """etcd + kube-apiserver for one state directory."""

    def __init__(self, state_dir: Path, *, detach: bool, listen: Listen | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self.detach = detach
        self.listen = listen or Listen()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.info: ClusterInfo | None = None

    def prepare(self) -> None:
        """Build (or find) the binaries: a first build is timed apart from start-up."""
        build.ensure()

    def enter(self, command: list[str]) -> list[str]:
        """How to run command next to this control plane (as is: same host)."""
        return command

    def start(self) -> ClusterInfo:
        binaries = build.ensure()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        files = self._write_credentials()
        for attempt in range(3):
            etcd_port, peer_port, api_port = _free_ports(3)
            api_port = self.listen.port or api_port
            try:
                self._start_etcd(binaries["etcd"], etcd_port, peer_port)
                self._start_apiserver(binaries["kube-apiserver"], etcd_port, api_port, files)
                break
            except ClusterError as exc:
                self.stop(remove=False)
                shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
        info = ClusterInfo(
            state_dir=str(self.state_dir),
            server=f"https://127.0.0.1:{api_port}",
            kubeconfig=str(self.state_dir / "kubeconfig"),
            ca_file=str(files["ca"]),
            client_cert_file=str(files["admin.crt"]),
            client_key_file=str(files["admin.key"]),
            token=files["token"].read_text().split(",", 1)[0],
            etcd_url=f"http://127.0.0.1:{etcd_port}",
            kubectl=str(binaries["kubectl"]),
            kubernetes_version=build.KUBERNETES_VERSION,
            etcd_version=build.ETCD_VERSION,
            pids={name: process.pid for name, process in self.processes.items()},
            node=self.listen.node_name,
        )
        self.info = info
        info.save()
        self._write_kubeconfig(info)
        self._bootstrap(info)
        return info

    def _write_credentials(self) -> dict[str, Path]:
        pki_dir = self.state_dir / "pki"
        ca = pki.CertificateAuthority()
        serving = ca.issue(
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                *([self.listen.node_name] if self.listen.node_name else []),
            ),
            ip_addresses=tuple(dict.fromkeys(("127.0.0.1", "10.0.0.1", self.listen.advertise))),
            server=True,
        )
        admin = ca.issue("admin", organization="system:masters")
        service_accounts = pki.service_account_key_pair()
        token = secrets.token_urlsafe(32)
        return {
            "ca": pki.write(pki_dir / "ca.crt", ca.cert_pem),
            "apiserver.crt": pki.write(pki_dir / "apiserver.crt", serving.cert_pem),
            "apiserver.key": pki.write(pki_dir / "apiserver.key", serving.key_pem, secret=True),
            "admin.crt": pki.write(pki_dir / "admin.crt", admin.cert_pem),
            "admin.key": pki.write(pki_dir / "admin.key", admin.key_pem, secret=True),
            "sa.pub": pki.write(pki_dir / "sa.pub", service_accounts.cert_pem),
            "sa.key": pki.write(pki_dir / "sa.key", service_accounts.key_pem, secret=True),
            "token": pki.write(
                pki_dir / "tokens.csv",
                f"{token},admin,admin,system:masters\n".encode(),
                secret=True,
            ),
        }

    def _start_etcd(self, etcd: Path, client_port: int, peer_port: int) -> None:
        client = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        log = self.state_dir / "etcd.log"
        process = _spawn(
            [
                str(etcd),
                "--name=sidecar-e2e",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=sidecar-e2e={peer}",
                "--unsafe-no-fsync",  # throwaway data; envtest does the same
                "--log-level=warn",
            ],
            log,
            detach=self.detach,
        )
        self.processes["etcd"] = process

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")

        _poll(healthy, f"etcd on {client}", process, log, timeout=30)

    def _start_apiserver(
        self, apiserver: Path, etcd_port: int, port: int, files: dict[str, Path]
    ) -> None:
        log = self.state_dir / "kube-apiserver.log"
        process = _spawn(
            [
                str(apiserver),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={self.listen.bind}",
                f"--advertise-address={self.listen.advertise}",
                f"--secure-port={port}",
                *self._kubelet_flags(files),
                f"--cert-dir={self.state_dir / 'apiserver'}",
                f"--tls-cert-file={files['apiserver.crt']}",
                f"--tls-private-key-file={files['apiserver.key']}",
                f"--client-ca-file={files['ca']}",
                f"--token-auth-file={files['token']}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={files['sa.pub']}",
                f"--service-account-signing-key-file={files['sa.key']}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                # Watches on these go straight to etcd, so compacting etcd expires
                # them (410 Gone), as the watch-cache window does in a busy cluster.
                "--watch-cache-sizes=configmaps#0,secrets#0",
                # Pod Certificates (beta, off by default in 1.36): the mesh signer's
                # second front door is tested against the real API and its validation.
                "--feature-gates=PodCertificateRequest=true",
                "--runtime-config=certificates.k8s.io/v1beta1/podcertificaterequests=true",
                "--profiling=false",
                "--v=1",
            ],
            log,
            detach=self.detach,
        )
        self.processes["kube-apiserver"] = process
        context = ssl.create_default_context(cafile=str(files["ca"]))
        context.load_cert_chain(str(files["admin.crt"]), str(files["admin.key"]))

        def ready() -> bool:
            url = f"https://127.0.0.1:{port}/readyz"
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as response:
                    return bool(response.status == 200)
            except urllib.error.HTTPError:
                return False

        _poll(ready, f"kube-apiserver on 127.0.0.1:{port}", process, log)

    def _kubelet_flags(self, files: dict[str, Path]) -> list[str]:
        if not self.listen.node_name:
            return []
        return [
            f"--kubelet-client-certificate={files['admin.crt']}",
            f"--kubelet-client-key={files['admin.key']}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _write_kubeconfig(self, info: ClusterInfo) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sidecar-e2e",
                    "cluster": {"server": info.server, "certificate-authority": info.ca_file},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": info.client_cert_file,
                        "client-key": info.client_key_file,
                    },
                }
            ],
            "contexts": [
                {
                    "name": "sidecar-e2e",
                    "context": {"cluster": "sidecar-e2e", "user": "admin"},
                }
            ],
            "current-context": "sidecar-e2e",
        }
        pki.write(Path(info.kubeconfig), yaml.safe_dump(config).encode(), secret=True)

    def _bootstrap(self, info: ClusterInfo) -> None:
        """Wait for the `default` namespace (created by the API server itself)."""
        api = Api(info)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while api.get("/api/v1/namespaces/default")[0] != 200:
            if time.monotonic() > deadline:
                raise ClusterError("the `default` namespace never appeared")
            time.sleep(0.1)
        ensure_namespace(api, "default")

    def stop(self, *, remove: bool = True) -> None:
        for name in ("kube-apiserver", "etcd"):
            process = self.processes.pop(name, None)
            if process is not None:
                _stop_group(process.pid)
                process.wait()
        if remove:
            shutil.rmtree(self.state_dir, ignore_errors=True)


class Api:
    """Minimal JSON client on the admin certificate (bootstrap; stdlib only)."""

    def __init__(self, info: ClusterInfo) -> None:
        self.server = info.server
        self.context = info.ssl_context()

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        return self.request("GET", path)


def ensure_namespace(api: Api, name: str, labels: dict[str, str] | None = None) -> None:
    """Create the namespace (if missing) and its `default` ServiceAccount."""
    status, body = api.request(
        "POST",
        "/api/v1/namespaces",
        {"metadata": {"name": name, "labels": labels or {}}},
    )
    if status not in (201, 409):
        raise ClusterError(f"creating namespace {name}: HTTP {status}: {body.get('message')}")
    status, body = api.request(
        "POST",
        f"/api/v1/namespaces/{name}/serviceaccounts",
        {"metadata": {"name": "default"}},
    )
    if status not in (201, 409):
        raise ClusterError(
            f"creating ServiceAccount {name}/default: HTTP {status}: {body.get('message')}"
        )


def running(state_dir: Path) -> ClusterInfo | None:
    path = state_dir / "cluster.json"
    if not path.exists():
        return None
    info = ClusterInfo.load(path)
    if all(_alive(pid) and _owned_by(pid, state_dir) for pid in info.pids.values()):
        return info
    return None


def _plane(state_dir: Path, *, detach: bool) -> ControlPlane | Any:
    """The control plane alone, or with a node in its sandbox (e2e.sandbox.wanted)."""
    from e2e import sandbox  # noqa: PLC0415 - e2e.sandbox builds on this module

    if sandbox.wanted(detached=detach):
        return sandbox.Sandbox(state_dir, detach=detach)
    return ControlPlane(state_dir, detach=detach)


def stop_state(state_dir: Path) -> bool:
    """Stop the processes recorded in state_dir and remove it; False if nothing ran."""
    path = state_dir / "cluster.json"
    found = False
    if path.exists():
        info = ClusterInfo.load(path)
        if info.node:
            from e2e import sandbox  # noqa: PLC0415

            return sandbox.stop_state(state_dir, info)
        for pid in info.pids.values():
            if _alive(pid) and _owned_by(pid, state_dir):
                _stop_group(pid)
                found = True
    shutil.rmtree(state_dir, ignore_errors=True)
    return found


def _export_lines(info: ClusterInfo) -> str:
    return "".join(f"export {key}={value}\n" for key, value in info.env().items())


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so `finally` blocks stop the processes."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _say(message: str) -> None:
    print(f"e2e: {message}", file=sys.stderr, flush=True)


def up(state_dir: Path) -> int:
    info = running(state_dir)
    if info is None:
        stop_state(state_dir)
        plane = _plane(state_dir, detach=True)
        plane.prepare()  # a first build is timed by itself, not as start-up
        started = time.monotonic()
        try:
            info = plane.start()
        except BaseException:
            plane.stop()
            raise
        _say(f"{_what(info)} up in {time.monotonic() - started:.1f}s at {info.server}")
    else:
        _say(f"control plane already running at {info.server}")
    sys.stdout.write(_export_lines(info))
    return 0


def _what(info: ClusterInfo) -> str:
    return f"control plane and node {info.node}" if info.node else "control plane"


def down(state_dir: Path) -> int:
    if stop_state(state_dir):
        _say(f"control plane in {state_dir} stopped")
    else:
        _say(f"no control plane running in {state_dir}")
    return 0


RUN_PREFIX = "sidecar-e2e-cluster-"
RUN_OWNER = "owner.pid"


def _remove_orphaned_run_dirs() -> None:
    """State directories of `run`s that were SIGKILLed (their processes died
    with them through PDEATHSIG; only the directory, ~120 MB of etcd data, stays)."""
    for directory in Path(tempfile.gettempdir()).glob(RUN_PREFIX + "*"):
        try:
            owner = int((directory / RUN_OWNER).read_text())
        except (OSError, ValueError):
            continue  # being created right now, or not ours
        try:
            cmdline = Path(f"/proc/{owner}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if not _alive(owner) or b"e2e.cluster" not in cmdline:
            shutil.rmtree(directory, ignore_errors=True)


def run(command: list[str]) -> int:
    if not command:
        raise SystemExit("usage: python -m e2e.cluster run -- COMMAND [ARGS...]")
    _remove_orphaned_run_dirs()
    state_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX))
    (state_dir / RUN_OWNER).write_text(str(os.getpid()))
    plane = _plane(state_dir, detach=False)
    child: subprocess.Popen[bytes] | None = None
    returncode = 1
    with _signals_raise():
        try:
            plane.prepare()  # a first build is timed by itself, not as start-up
            started = time.monotonic()
            info = plane.start()
            _say(f"{_what(info)} up in {time.monotonic() - started:.1f}s at {info.server}")
            try:
                child = subprocess.Popen(
                    plane.enter(command),
                    env=dict(os.environ, **info.env(), SIDECAR_E2E_HOST_PID=str(os.getpid())),
                    preexec_fn=_terminate_with_parent,  # noqa: PLW1509
                )
            except OSError as exc:
                _say(f"cannot run {command[0]!r}: {exc}")
                returncode = 127
                return returncode
            returncode = child.wait()
            child = None
        finally:
            if child is not None and child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            if returncode != 0:
                _keep_logs(state_dir)
            plane.stop()
    return returncode


def exec_in(state_dir: Path, command: list[str]) -> int:
    """Run command next to the running `up` cluster (in its sandbox's network)."""
    info = running(state_dir)
    if info is None or not command:
        _say("usage: start a cluster (`make cluster-up`), then python -m e2e.cluster exec -- CMD")
        return 1
    if info.node:
        from e2e import sandbox  # noqa: PLC0415

        command = sandbox.enter(info.pids["sandbox"], command)
    return subprocess.run(command, env=dict(os.environ, **info.env()), check=False).returncode


def _keep_logs(state_dir: Path) -> None:
    logs = build.CACHE / "logs" / time.strftime("%Y%m%d-%H%M%S")
    for source in [*state_dir.glob("*.log"), *state_dir.glob("node/*.log")]:
        logs.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, logs / source.name)
    if logs.exists():
        _say(f"control plane logs kept in {logs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster", description=__doc__)
    parser.add_argument("verb", choices=["up", "down", "env", "run", "exec"])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    try:
        if args.verb == "up":
            return up(default_state_dir())
        if args.verb == "down":
            return down(default_state_dir())
        if args.verb == "env":
            info = running(default_state_dir())
            if info is None:
                _say("no control plane running; start one with `make cluster-up`")
                return 1
            sys.stdout.write(_export_lines(info))
            return 0
        if args.verb == "exec":
            return exec_in(default_state_dir(), command)
        return run(command)
    except (ClusterError, build.BuildError) as exc:
        _say(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
