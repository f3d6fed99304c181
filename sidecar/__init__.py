"""The sidecar runtime agent: ``sidecar proxy|secrets|config|logs|capture|signal``.

The agent stays small and quick to start: the common modules here import only
the standard library. Each role lives in its own subpackage and is imported
only when that role runs; it reads its flags and ``SIDECAR_*`` variables from
its rows in ``contract`` (``sidecar.options.read_knobs``).

Exceptions (``sidecar.errors`` unless noted); ``sidecar.cli`` turns a
``SidecarError`` into one line on stderr and its ``exit_code``::

    SidecarError                        exit 1
    ├── UsageError                      a flag or variable is invalid: exit 2
    ├── SourceError                     Vault, a config URL or the API server failed
    │   ├── RetryableSourceError        worth retrying (refused, 429, 503, ...)
    │   │   └── config.kube.NotFound    the ConfigMap or Secret is not there (yet)
    │   ├── config.kube.Gone            410: the watch must list again
    │   └── secrets.vault.VaultError
    │       ├── Denied                  403 for a live token
    │       ├── NotFound                the secret or its version is not there
    │       ├── Rejected                Vault refused the request (4xx)
    │       └── Unavailable             sealed, standby, 5xx (also retryable)
    ├── OutputError                     a file could not be rendered or written
    ├── IdentityError                   the proxy's workload certificate
    │   ├── SignerUnavailable
    │   ├── SignerDenied
    │   └── CertificateRejected
    ├── logs.errors.StateError          the logs role's checkpoint
    ├── logs.errors.SinkError           a log sink failed
    │   ├── RetryableSinkError
    │   └── RejectedError
    │       └── TooLargeError
    ├── proxy.supervisor.EnvoyFailed    Envoy exited on its own
    └── capture.main.CaptureFailed      iptables missing or refused

Internal, never shown as such: ``proxy.admin.AdminError`` (Envoy's admin API)
and ``reload.ReloadFailed`` (one reload attempt; retried, then counted).
"""

__version__ = "0.1.0"
