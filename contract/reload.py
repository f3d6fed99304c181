"""Reload targets: how the app is told that its secrets or config changed.

One string, the ``reload`` annotation, passed to the agent as
``SIDECAR_RELOAD``; parsed here by both sides:

* ``http://127.0.0.1:8080/-/reload`` (or https): POST to that URL, any 2xx is
  success. ``GET http://...`` (or ``PUT``) picks another method.
* ``signal:SIGHUP`` or ``signal:SIGHUP:nginx``: send the signal to the app's
  processes (needs ``shareProcessNamespace: true`` and an agent running as the
  app's user; the injector renders both).

Pure (stdlib ``signal`` for the names only); ``sidecar.reload`` sends them.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

RELOAD_HELP = (
    "an http(s) URL (optionally prefixed by a method, e.g. 'GET http://...') or "
    "'signal:SIGNAME[:process-name]', e.g. 'signal:SIGHUP:nginx'"
)
_METHODS = ("GET", "POST", "PUT")


@dataclass(frozen=True)
class HttpTarget:
    method: str
    url: str

    def __str__(self) -> str:
        return f"{self.method} {self.url}"


@dataclass(frozen=True)
class SignalTarget:
    signum: signal.Signals
    process: str | None

    def __str__(self) -> str:
        return f"signal:{self.signum.name}" + (f":{self.process}" if self.process else "")


ReloadTarget = HttpTarget | SignalTarget


def parse_reload(text: str) -> ReloadTarget:
    value = text.strip()
    if value.startswith("signal:"):
        name, _, process = value[len("signal:") :].partition(":")
        name = name.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            signum = signal.Signals[name]
        except KeyError:
            raise ValueError(f"{text!r}: unknown signal {name}; use {RELOAD_HELP}") from None
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f"{text!r}: {name} cannot be a reload signal; use e.g. SIGHUP")
        return SignalTarget(signum, process or None)
    method, _, url = value.partition(" ")
    if not url:
        method, url = "POST", value
    method = method.upper()
    if method not in _METHODS or not url.startswith(("http://", "https://")):
        raise ValueError(f"{text!r} is not {RELOAD_HELP}")
    return HttpTarget(method, url)
