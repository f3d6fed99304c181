"""Telling the app that its secrets or config changed.

A reload target is written as one string (the ``reload`` annotation, passed to
the agent as ``SIDECAR_RELOAD``; parsed by ``contract.reload``):

* ``http://127.0.0.1:8080/-/reload`` (or https): POST to that URL, any 2xx is
  success. ``GET http://...`` picks another method.
* ``signal:SIGHUP`` or ``signal:SIGHUP:nginx``: send the signal to the app's
  processes. That needs ``shareProcessNamespace: true`` and a process running
  as the app's user: the injector renders ``sidecar signal`` (``signaller``)
  for it, which holds no secret, and points the agents at its ``POST
  /reload``. Without a name every process of its own user except itself is
  signalled; with a name, only processes whose command name
  (``/proc/PID/comm``) is that name.

``Notifier.notify()`` retries with back-off and counts outcomes.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

from contract.reload import HttpTarget, ReloadTarget, SignalTarget
from sidecar.backoff import Backoff, Deadline
from sidecar.log import Logger
from sidecar.metrics import Registry


class ReloadFailed(Exception):
    pass


class Notifier:
    def __init__(
        self,
        target: ReloadTarget,
        registry: Registry,
        log: Logger,
        *,
        attempts: int = 5,
        timeout: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.target = target
        self.log = log
        self.attempts = attempts
        self.timeout = timeout
        self.backoff = backoff or Backoff(initial=0.2, maximum=5.0)
        self.reloads = registry.counter(
            "reloads_total", "App reload notifications by outcome", ("outcome",)
        )

    def notify(self, stop: threading.Event | None = None) -> bool:
        """Tell the app once; True when it acknowledged. Never raises."""
        self.backoff.reset()
        deadline = Deadline.after(self.timeout * self.attempts + 30)
        for attempt in range(1, self.attempts + 1):
            try:
                self._send()
            except ReloadFailed as exc:
                self.log.warning(
                    "reload failed", target=str(self.target), attempt=attempt, error=str(exc)
                )
                wait = min(self.backoff.next(), deadline.remaining())
                if attempt == self.attempts or (stop is not None and stop.wait(wait)):
                    break
                if stop is None:
                    threading.Event().wait(wait)
                continue
            self.reloads.inc(outcome="ok")
            self.log.info("reload sent", target=str(self.target), attempt=attempt)
            return True
        self.reloads.inc(outcome="failed")
        return False

    def send(self) -> None:
        """One attempt; ``ReloadFailed`` when it did not reach the app."""
        self._send()

    def _send(self) -> None:
        if isinstance(self.target, HttpTarget):
            self._send_http(self.target)
        else:
            self._send_signal(self.target)

    def _send_http(self, target: HttpTarget) -> None:
        request = urllib.request.Request(target.url, method=target.method, data=b"")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(4096)
        except urllib.error.HTTPError as exc:
            raise ReloadFailed(f"{target.url} answered {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReloadFailed(f"{target.url} unreachable: {reason}") from exc

    def _send_signal(self, target: SignalTarget) -> None:
        pids = find_processes(target.process)
        if not pids:
            who = f"named {target.process!r}" if target.process else "of the app's user"
            raise ReloadFailed(
                f"no process {who} is visible; the pod needs shareProcessNamespace: true "
                "and sidecar signal must run as the app's user"
            )
        sent = 0
        for pid in pids:
            try:
                os.kill(pid, target.signum)
                sent += 1
            except ProcessLookupError:
                continue
            except PermissionError as exc:
                raise ReloadFailed(
                    f"not allowed to signal pid {pid}; run sidecar signal as the app's user"
                ) from exc
        if not sent:
            raise ReloadFailed("every matching process exited before it could be signalled")


def find_processes(name: str | None, proc: Path = Path("/proc")) -> list[int]:
    """Pids of processes to signal: by command name, or every process of our
    own user but ourselves and our parent-less init (pid 1, the pause process)."""
    me, uid = os.getpid(), os.getuid()
    found: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in (me, 1):
            continue
        try:
            if name is not None:
                if (entry / "comm").read_text().strip() == name:
                    found.append(pid)
            elif entry.stat().st_uid == uid:
                found.append(pid)
        except OSError:
            continue
    return sorted(found)
