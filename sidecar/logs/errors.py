"""The logs role's exceptions (under ``sidecar.errors.SidecarError``)::

    SidecarError
    ├── UsageError              a flag or SIDECAR_LOGS_* value (sidecar.errors)
    ├── StateError              the state volume cannot be read or written
    └── SinkError               the sink did not take a batch
        ├── RetryableSinkError  worth sending again: refused, reset, timeout, 408, 429, 5xx
        └── RejectedError       the sink refuses these records for good (other 4xx): dropped
            └── TooLargeError   413: the batch is split in halves and each half sent again

Messages name the sink, what it answered and what to do.
"""

from __future__ import annotations

from sidecar.errors import SidecarError


class StateError(SidecarError):
    """The positions checkpoint cannot be written (the state volume)."""


class SinkError(SidecarError):
    """The sink did not acknowledge a batch."""


class RetryableSinkError(SinkError):
    """Connection refused or reset, a timeout, 408, 429 or 5xx: send again later."""


class RejectedError(SinkError):
    """The sink refuses the records for good (400, 401, 403, 404, ...)."""


class TooLargeError(RejectedError):
    """HTTP 413: the request body is larger than the sink accepts."""
