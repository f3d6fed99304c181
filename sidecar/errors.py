"""The sidecar agent's exception hierarchy.

Every error the agent reports names the thing, the problem and the fix; the
command line turns them into one line on stderr and an exit code, never a
traceback.
"""


class SidecarError(Exception):
    """Base class of every error the agent raises on purpose."""

    exit_code = 1


class UsageError(SidecarError):
    """A flag or ``SIDECAR_*`` variable has a value the agent cannot accept."""

    exit_code = 2


class SourceError(SidecarError):
    """A remote source (Vault, a config URL, the Kubernetes API) failed."""


class RetryableSourceError(SourceError):
    """A source failure worth retrying (connection refused, 429, 503, ...)."""


class OutputError(SidecarError):
    """A file could not be rendered or written."""


class IdentityError(SidecarError):
    """The proxy's workload identity (certificate) cannot be obtained or used."""


class SignerUnavailable(IdentityError):
    """The certificate signer cannot be reached, timed out or answered 5xx: retry."""


class SignerDenied(IdentityError):
    """The signer refused the certificate request (4xx); the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class CertificateRejected(IdentityError):
    """A certificate from the signer failed the agent's own checks."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)
