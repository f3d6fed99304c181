"""The contract between the injector and the sidecar agent.

Pure and standard-library only: the injector (``injector.core``) and the agent
(``sidecar``) both import it, and it imports neither (import-linter checks it
in ``make check``). It ships in both images, inside the one wheel.

* ``contract.units``: the value parsers both sides use (durations, rates,
  ports, booleans, retry_on, upstream URLs), so they accept the same spellings;
* ``contract.reload``: reload targets (``reload`` / ``SIDECAR_RELOAD``);
* ``contract.spiffe``: SPIFFE ids and ``allow-from`` peer patterns (mesh).

Errors: the parsers raise ``ValueError`` with a message saying what is
accepted; each side wraps it in its own exception tree (``InjectionDenied`` /
``ConfigError`` in the injector, ``UsageError`` in the agent).
"""
