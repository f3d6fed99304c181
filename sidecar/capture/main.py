"""``sidecar capture``: install the capture rules for IPv4 and IPv6, then exit.

For each family: ``ip(6)tables-save -t nat``, then ``ip(6)tables-restore
--noflush`` with ``rules.restore_input`` (one transaction per family). IPv6
is skipped, with a log line, only when the pod has no IPv6 address besides
loopback and link-local (nothing could be sent over it); otherwise an IPv6
failure fails the container like an IPv4 one, and the pod does not start
with half of its traffic uncaptured.

Exit codes: 0 rules in place; 1 iptables failed (the message carries its
output and the usual cause); 2 bad flag or variable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sidecar.capture.rules import restore_input
from sidecar.capture.settings import CaptureSettings, load
from sidecar.errors import SidecarError
from sidecar.log import Logger

TOOL_TIMEOUT = 10.0
# Where Debian and most images keep iptables; PATH may not include sbin.
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
IF_INET6 = Path("/proc/net/if_inet6")


class CaptureFailed(SidecarError):
    """iptables is missing or refused the rules."""


@dataclass(frozen=True)
class Family:
    version: int
    save: str
    restore: str


FAMILIES = (
    Family(4, "iptables-save", "iptables-restore"),
    Family(6, "ip6tables-save", "ip6tables-restore"),
)


def main(argv: list[str]) -> int:
    started = time.monotonic()
    settings = load(argv)
    if settings.dry_run:
        try:
            for family in FAMILIES:
                text = restore_input(settings, family.version, "")
                sys.stdout.write(f"# IPv{family.version}\n{text}")
            sys.stdout.flush()
        except BrokenPipeError:  # a reader that stopped early (| head) is no failure
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    log = Logger("capture", settings.log_level)
    installed = [v for v in (install(f, settings, log) for f in FAMILIES) if v]
    log.info(
        "capture rules installed",
        families=[f"IPv{v}" for v in installed],
        ms=round((time.monotonic() - started) * 1000, 1),
        **settings.describe(),
    )
    return 0


def install(family: Family, settings: CaptureSettings, log: Logger) -> int | None:
    """Install one family's rules; the family's version, or None when skipped."""
    try:
        saved = _run(family.save, ["-t", "nat"])
    except CaptureFailed as failure:
        if family.version == 6 and not ipv6_in_use():
            log.info("IPv6 rules skipped: the pod has no IPv6 address", reason=str(failure))
            return None
        raise
    _run(family.restore, ["--noflush"], restore_input(settings, family.version, saved))
    return family.version


def ipv6_in_use(path: Path = IF_INET6) -> bool:
    """Whether an interface has an IPv6 address other than ::1 and fe80::/10."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        address = line.split()[0] if line.split() else ""
        if address and address != "0" * 31 + "1" and not address.startswith("fe8"):
            return True
    return False


def _run(tool: str, args: list[str], stdin: str | None = None) -> str:
    path = _which(tool)
    try:
        result = subprocess.run(
            [path, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CaptureFailed(f"{tool} did not finish within {TOOL_TIMEOUT:g}s") from None
    except OSError as exc:
        raise CaptureFailed(f"cannot run {path}: {exc.strerror}") from None
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-600:] or "no output"
        hint = ""
        if "ermission denied" in output or "must be root" in output:
            hint = (
                "; the container needs the NET_ADMIN and NET_RAW capabilities and user 0 "
                "(securityContext.capabilities.add, runAsUser: 0): the injector renders them"
            )
        raise CaptureFailed(f"{tool} {' '.join(args)} failed ({result.returncode}): {output}{hint}")
    return result.stdout


def _which(tool: str) -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    found = shutil.which(tool, path=search)
    if found is None:
        raise CaptureFailed(
            f"{tool} not found (looked in PATH and {', '.join(SBIN)}); the sidecar image "
            "must include iptables (nf_tables backend)"
        )
    return found
