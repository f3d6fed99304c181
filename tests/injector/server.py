"""``sidecar-injector serve`` as a real process on 127.0.0.1 (ephemeral port), over TLS."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import wait_for


class InjectorServer:
    def __init__(self, tmp: Path, settings: dict[str, Any], *extra: str) -> None:
        self.tmp = tmp
        self.port = 0  # known once the server says where it listens
        self.ca = tmp / "ca.crt"
        config = tmp / "config.yaml"
        config.write_text(yaml.safe_dump(settings))
        self.log = (tmp / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "injector.cli.main",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--ca-out",
                str(self.ca),
                "--config",
                str(config),
                # as installed: the operator's certificate endpoint (mesh mTLS)
                "--mesh-signer",
                "https://sidecar-injector.sidecar-injector.svc:15012",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.url = ""
        self.client: httpx.Client | None = None

    def start(self) -> InjectorServer:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            if not self.url:
                found = re.search(r"serving (https://127\.0\.0\.1:(\d+))/mutate", self.output())
                if found is None:
                    return False
                self.url, self.port = found[1], int(found[2])
            if not self.ca.exists():
                return False
            if self.client is None:
                self.client = httpx.Client(verify=ssl.create_default_context(cafile=self.ca))
            return self.client.get(self.url + "/healthz").status_code == 200

        wait_for(up, timeout=30, what="sidecar-injector serve to answer /healthz")
        return self

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        assert self.client is not None
        return self.client.post(self.url + path, **kwargs)

    def get(self, path: str) -> httpx.Response:
        assert self.client is not None
        return self.client.get(self.url + path)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.tmp / "server.log").read_text(errors="replace")

    def stop(self) -> int:
        if self.client is not None:
            self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode
