"""A private PostgreSQL from Debian's packages, on 127.0.0.1, for Vault's
database secrets engine.

``initdb`` into a fresh directory (password authentication, scram-sha-256),
``postgres`` in the foreground as our child (its own process group, killed
with the process that started it), a TCP port of its own and its socket in
its directory: nothing of the host's PostgreSQL (if one runs) is touched.
As root, it runs as the ``postgres`` user (``setpriv``), as PostgreSQL
insists. ``psql`` checks, as a dynamic user would, that credentials work.

Binaries: the newest ``/usr/lib/postgresql/*/bin`` (``$SIDECAR_PG_BIN``
overrides); ``.ci/run`` installs Debian's ``postgresql``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from e2e import cluster

SUPERUSER = "postgres"


class PostgresError(RuntimeError):
    """PostgreSQL is missing or could not be started; says what to install or read."""


def bin_dir() -> Path:
    configured = os.environ.get("SIDECAR_PG_BIN")
    if configured:
        return Path(configured)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install "
            "Debian's postgresql package (apt-get install postgresql; .ci/run does) or set "
            "SIDECAR_PG_BIN"
        )
    return found[-1].parent


class Postgres:
    def __init__(self, directory: Path | None = None) -> None:
        self.bin = bin_dir()
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.directory = directory or Path(tempfile.mkdtemp(prefix="sidecar-pg-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SUPERUSER)  # created by Debian's package
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self._as_owner = [
                "setpriv",
                f"--reuid={owner.pw_uid}",
                f"--regid={owner.pw_gid}",
                "--init-groups",
                "--pdeathsig=SIGKILL",
            ]

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def start(self) -> Postgres:
        data = self.directory / "data"
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.password + "\n")
        shutil.chown(pwfile, *self._owner())
        self._run_as_owner(
            [
                str(self.bin / "initdb"),
                f"--pgdata={data}",
                f"--username={SUPERUSER}",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        self.port = cluster.free_port()
        command = [
            *self._as_owner,
            str(self.bin / "postgres"),
            "-D",
            str(data),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.directory}",
            "-c",
            "fsync=off",
        ]
        self.process = cluster._spawn(command, self.log, detach=False)
        cluster._poll(
            lambda: self.login(SUPERUSER, self.password, "select 1")[0] == 0,
            f"postgres on 127.0.0.1:{self.port}",
            self.process,
            self.log,
            timeout=60,
        )
        return self

    def _owner(self) -> tuple[int, int]:
        stat = self.directory.stat()
        return stat.st_uid, stat.st_gid

    def _run_as_owner(self, command: list[str]) -> None:
        result = subprocess.run(
            [*self._as_owner, *command], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise PostgresError(f"{' '.join(command)} failed: {result.stderr.strip()}")

    def connection_url(self) -> str:
        """The DSN template Vault's database engine fills in."""
        return f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{self.port}/postgres"

    def login(self, user: str, password: str, sql: str = "select current_user") -> tuple[int, str]:
        """Run sql as that user over TCP: (psql's exit code, output or error)."""
        result = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-A",
                "-t",
                "-c",
                sql,
                f"host=127.0.0.1 port={self.port} dbname=postgres user={user} sslmode=disable",
            ],
            env=dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10"),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.returncode, (result.stdout if result.returncode == 0 else result.stderr)

    def query(self, sql: str) -> str:
        """Run sql as the superuser; its output (psql -At)."""
        code, output = self.login(SUPERUSER, self.password, sql)
        if code != 0:
            raise PostgresError(f"psql: {output.strip()}")
        return output.strip()

    def role_exists(self, name: str) -> bool:
        escaped = name.replace("'", "''")
        return self.query(f"select count(*) from pg_roles where rolname = '{escaped}'") == "1"

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT: PostgreSQL's "fast" shutdown; _stop_group escalates if needed.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                cluster._stop_group(self.process.pid)
                self.process.wait()
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
