"""``sidecar <role> [options]``: the entry point of the bundled sidecar image.

Roles are imported only when they run, so ``sidecar config`` never loads the
proxy's code. Each role module exposes ``main(argv: list[str]) -> int``; it
reads its flags and ``SIDECAR_*`` variables once, there, and passes a typed
settings object down. A ``SidecarError`` becomes one line on stderr and its
exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

from sidecar import __version__
from sidecar.errors import SidecarError

ROLES = {
    "proxy": "sidecar.proxy.main",
    "secrets": "sidecar.secrets.main",
    "config": "sidecar.config.main",
    "logs": "sidecar.logs.main",
    "capture": "sidecar.capture.main",
    "signal": "sidecar.signaller",
}
USAGE = (
    "usage: sidecar {proxy|secrets|config|logs} [--init] [options]\n"
    "       sidecar capture [options]   (the init container of proxy-capture: iptables)\n"
    "       sidecar signal --signal SIGHUP[:name]   (signals the app for reload: signal)\n"
    "       sidecar version\n"
    "Run 'sidecar ROLE --help' for a role's options."
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    role, rest = args[0], args[1:]
    if role in ("version", "--version"):
        print(__version__)
        return 0
    if role not in ROLES:
        print(f"sidecar: unknown role {role!r}; choose one of {', '.join(ROLES)}", file=sys.stderr)
        return 2
    module = importlib.import_module(ROLES[role])
    try:
        code: int = module.main(rest)
    except SidecarError as exc:
        print(f"sidecar {role}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code
