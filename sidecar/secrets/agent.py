"""Fetch, render, write, and keep fresh: the secrets role's schedule.

Each secret is fetched once, rendered (``templates``) and written atomically
(``sidecar.files.write_atomic``: temp file + rename, only when the bytes
changed). What happens next depends on what Vault answered:

* a renewable lease (dynamic secrets): renewed at about 2/3 of its duration;
  when Vault caps a renewal (max TTL reached) it is re-fetched at about 85%
  of what is left;
* a lease that cannot be renewed: re-fetched at about 85% of its duration;
* no lease (KV v1/v2): re-read every ``kv_interval``, or sooner when Vault
  says so: KV v1 returns a secret's ``ttl`` key as ``lease_duration`` without
  a lease, a hint how often to check back (Vault's KV v1 documentation).

Lease and token durations count from just before the request that got them:
Vault starts a TTL no earlier, so a slow answer (or a loaded node) never
pushes a renewal past the expiry.

A 403 on a read is either a token gone bad or a policy that does not cover
the path: ``lookup-self`` tells which. A bad token means one more login and
one retry; a second 403, or a good token, is "permission denied for path X".
Vault revokes the leases a token created when the token ends, so after a new
login every leased secret is fetched anew under the new token (the way Vault
Agent re-renders on re-authentication). The app is told once per round in
which some file really changed (never for unchanged re-reads).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from sidecar.backoff import Backoff, Deadline
from sidecar.errors import OutputError, SidecarError, SourceError
from sidecar.files import write_atomic
from sidecar.lifecycle import StopEvent
from sidecar.log import Logger
from sidecar.metrics import Registry
from sidecar.reload import Notifier
from sidecar.secrets.auth import Auth
from sidecar.secrets.settings import SecretSpec, SecretsSettings
from sidecar.secrets.state import Handoff, LeaseState
from sidecar.secrets.templates import render
from sidecar.secrets.vault import Denied, Json, NotFound, Rejected, VaultClient, VaultError

RENEW_SHARE = 2 / 3
REFETCH_SHARE = 0.85


@dataclass
class Tracked:
    spec: SecretSpec
    lease: LeaseState | None = None
    due: float = 0.0
    rendered: bool = False
    failures: int = 0
    error: str = ""
    orphaned_for: str = ""  # the token ref under which this lease was found orphaned
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=1.0, maximum=60.0))


class Agent:
    def __init__(
        self,
        settings: SecretsSettings,
        client: VaultClient,
        auth: Auth,
        registry: Registry,
        log: Logger,
        notifier: Notifier | None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.auth = auth
        self.log = log
        self.notifier = notifier
        self.tracked = [Tracked(spec) for spec in settings.secrets]
        self.fetches = registry.counter(
            "secrets_fetches_total", "Secret reads by outcome", ("outcome",)
        )
        self.relogins = registry.counter("secrets_relogins_total", "Logins after a 403")
        self.render_failures = registry.counter(
            "secrets_render_failures_total", "Secrets that could not be rendered or written"
        )
        self.last_success = registry.gauge(
            "secrets_last_success_timestamp_seconds", "When every secret was last current"
        )

    def prepare(self) -> None:
        for directory in (self.settings.secrets_dir, self.settings.state_dir):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(
                    f"{directory}: {exc.strerror}; it must be a writable volume (the "
                    "injector mounts one there)"
                ) from exc
        group = self.settings.file_group
        if group is not None and os.geteuid() != 0 and group not in _own_groups():
            raise OutputError(
                f"SIDECAR_FILE_GROUP {group}: the agent (uid {os.geteuid()}, groups "
                f"{', '.join(map(str, sorted(_own_groups())))}) is not in that group, so it "
                "cannot give the files to it; set the pod's securityContext.fsGroup to it "
                "(the kubelet adds every container to that group) or unset SIDECAR_FILE_GROUP"
            )

    # --- one secret ----------------------------------------------------------
    def fetch(self, item: Tracked) -> bool:
        spec = item.spec
        sent = time.time()  # a lease's TTL counts from no earlier than this
        try:
            answer = self._authorized(
                lambda token: self.client.call("GET", spec.path, token=token), spec.path
            )
        except NotFound as exc:
            raise NotFound(_not_found(spec.path, exc.document), 404) from None
        data = _secret_data(answer)
        try:
            content = render(spec, data)
            changed = write_atomic(
                self.settings.secrets_dir / spec.name,
                content,
                mode=self.settings.file_mode(spec),
                group=self.settings.file_group,
            )
        except OutputError:
            self.render_failures.inc()
            raise
        now = time.time()
        lease_id = str(answer.get("lease_id") or "")
        duration = float(answer.get("lease_duration") or 0)
        if lease_id and duration > 0:
            item.lease = LeaseState(
                lease_id,
                duration,
                sent,
                bool(answer.get("renewable")),
                digest=hashlib.sha256(content).hexdigest(),
                token_ref=self.auth.ref,
            )
            share = RENEW_SHARE if item.lease.renewable else REFETCH_SHARE
            item.due = sent + duration * share
        else:
            # No lease (KV). KV v1 answers a secret's ``ttl`` key, else the mount's
            # default lease TTL, as lease_duration: a hint how often to check back.
            item.lease = None
            hint = duration if duration > 0 else float("inf")
            item.due = now + min(self.settings.kv_interval, hint)
        self.fetches.inc(outcome="ok")
        if changed:
            self.log.info("secret written", secret=spec.name, path=spec.path)
        return changed

    def renew(self, item: Tracked) -> bool:
        lease = item.lease
        assert lease is not None
        sent = time.time()
        try:
            answer = self._authorized(
                lambda token: self.client.call(
                    "PUT",
                    "sys/leases/renew",
                    token=token,
                    body={"lease_id": lease.lease_id, "increment": int(lease.duration)},
                ),
                "sys/leases/renew",
            )
        except Rejected:
            self.log.info("lease no longer renewable; fetching anew", secret=item.spec.name)
            return self.fetch(item)
        granted = float(answer.get("lease_duration") or 0)
        self.auth.renewals.inc(kind="lease")
        capped = granted < lease.duration or bool(answer.get("warnings"))
        item.lease = LeaseState(
            lease.lease_id, granted, sent, lease.renewable, capped, lease.digest, lease.token_ref
        )
        item.due = sent + granted * (REFETCH_SHARE if capped else RENEW_SHARE)
        self.log.info("lease renewed", secret=item.spec.name, ttl=int(granted), capped=capped)
        return False

    def act(self, item: Tracked) -> bool:
        lease = item.lease
        if (
            lease is not None
            and lease.renewable
            and not lease.capped
            and lease.token_ref == self.auth.ref
        ):
            return self.renew(item)
        return self.fetch(item)

    def _authorized(self, request: Any, path: str) -> Json:
        try:
            result: Json = request(self.auth.current())
            return result
        except Denied as exc:
            if self.auth.valid():  # the token is good: the policy refuses this path
                raise self._denied(path, exc) from None
            self.relogins.inc()
            self.log.info("token refused; logging in again", path=path)
            self.auth.login()
        try:
            result = request(self.auth.current())
        except Denied as exc:
            raise self._denied(path, exc) from None
        return result

    def _denied(self, path: str, exc: Denied) -> Denied:
        return Denied(
            f"permission denied for path {path}: role {self.settings.role!r} has no policy "
            f"that allows it ({exc})",
            403,
        )

    # --- init: everything once -------------------------------------------------
    def render_all(self, deadline: Deadline, stop: StopEvent) -> None:
        self.prepare()
        self.client.deadline = deadline
        try:
            self._render_all(deadline, stop)
        finally:
            self.client.deadline = None

    def _render_all(self, deadline: Deadline, stop: StopEvent) -> None:
        backoff = Backoff(initial=0.2, maximum=5.0)
        pending = list(self.tracked)
        while True:
            for item in list(pending):
                try:
                    self.fetch(item)
                except OutputError:
                    raise  # a template or the volume: retrying would not help
                except SourceError as exc:
                    if not (item.error and _cut_off(exc, deadline)):
                        item.error = str(exc)  # else the last real answer stands
                    self.fetches.inc(outcome="error")
                    if isinstance(exc, VaultError) and exc.during_login:
                        for other in pending:
                            other.error = item.error
                        break  # the same login failure awaits every secret
                else:
                    item.rendered = True
                    pending.remove(item)
            if not pending:
                self.last_success.set(time.time())
                return
            if deadline.expired or stop.is_set():
                raise SourceError(self._summary(pending, deadline))
            wait = min(backoff.next(), deadline.remaining())
            self.log.warning(
                "secrets not ready; retrying",
                pending=[i.spec.name for i in pending],
                retry_in=round(wait, 2),
                error=pending[0].error,
            )
            stop.wait(wait)
            if deadline.expired or stop.is_set():  # no try left that the deadline would not cut
                raise SourceError(self._summary(pending, deadline))

    def _summary(self, pending: list[Tracked], deadline: Deadline) -> str:
        errors = {item.error for item in pending}
        if len(errors) == 1:
            names = ", ".join(item.spec.name for item in pending)
            return f"secrets not rendered by the deadline ({names}): {errors.pop()}"
        parts = [f"{item.spec.name} ({item.spec.path}): {item.error}" for item in pending]
        return "secrets not rendered by the deadline: " + "; ".join(parts)

    # --- refresher -----------------------------------------------------------------
    def adopt(self, handoff: Handoff) -> None:
        if handoff.token is not None and self.auth.adopt(handoff.token):
            self.log.info("reusing the init container's token")
        for item in self.tracked:
            path = self.settings.secrets_dir / item.spec.name
            if not path.exists():
                continue  # fetched on the first tick
            # Rendered by the init container (or before a restart): the app can
            # read it, so the refresher is ready while it re-reads KV secrets.
            item.rendered = True
            lease = handoff.leases.get(item.spec.name)
            if lease is not None:
                item.lease = lease
                share = REFETCH_SHARE if lease.capped or not lease.renewable else RENEW_SHARE
                item.due = lease.issued + lease.duration * share

    def handoff(self) -> Handoff:
        leases = {i.spec.name: i.lease for i in self.tracked if i.lease is not None}
        return Handoff(self.auth.token, leases)

    @property
    def ready(self) -> bool:
        return all(item.rendered for item in self.tracked)

    def tick(self, stop: StopEvent) -> float:
        """Do what is due; return seconds until the next thing is due."""
        now = time.time()
        if self.auth.due <= now:
            try:
                self.auth.maintain()
            except SidecarError as exc:
                self.log.warning(
                    "token renewal failed", error=str(exc), retry_in=round(self.auth.due - now, 2)
                )
        ref = self.auth.ref
        for item in self.tracked:
            lease = item.lease
            if lease is not None and ref and ref not in (lease.token_ref, item.orphaned_for):
                item.orphaned_for = ref  # its token is gone or going: so is the lease
                item.due = now
                self.log.info("new token; fetching leased secret anew", secret=item.spec.name)
        changed = False
        for item in self.tracked:
            if item.due > now:
                continue
            was_rendered = item.rendered
            try:
                changed = (self.act(item) and was_rendered) or changed
            except (SourceError, OutputError) as exc:
                item.failures += 1
                item.due = time.time() + item.backoff.next()
                self.fetches.inc(outcome="error")
                self.log.warning(
                    "refresh failed", secret=item.spec.name, error=str(exc), failures=item.failures
                )
                continue
            item.failures = 0
            item.backoff.reset()
            item.rendered = True
        if all(item.failures == 0 for item in self.tracked):
            self.last_success.set(time.time())
        if changed and self.notifier is not None:
            self.notifier.notify(stop)
        dues = [item.due for item in self.tracked]
        dues.append(self.auth.due)
        return max(0.05, min(dues) - time.time())


def _own_groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}


def _not_found(path: str, document: Json) -> str:
    data = document.get("data")
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if isinstance(metadata, dict) and (metadata.get("deletion_time") or metadata.get("destroyed")):
        how = (
            "destroyed" if metadata.get("destroyed") else f"deleted at {metadata['deletion_time']}"
        )
        return (
            f"secret at {path}: version {metadata.get('version')} was {how}; write a new "
            "version or read an older one with ?version=N"
        )
    return (
        f"no secret at {path} (404); check the path (KV v2 reads look like "
        "secret/data/NAME, KV v1 kv/NAME, dynamic database/creds/ROLE)"
    )


def _secret_data(answer: Json) -> dict[str, Any]:
    data = answer.get("data")
    if not isinstance(data, dict):
        raise SourceError("Vault answered without a data object")
    inner, metadata = data.get("data"), data.get("metadata")
    if isinstance(inner, dict) and isinstance(metadata, dict) and "version" in metadata:
        return inner  # KV v2
    return data


def _cut_off(exc: BaseException, deadline: Deadline) -> bool:
    """A call that timed out because the deadline came: it says nothing about
    Vault, so it must not replace what Vault last answered (a refused login
    would read "unreachable: timed out" in the pod's termination message)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, TimeoutError):
            return deadline.expired
        cause = cause.__cause__
    return False
