"""Workload identity for the proxy role: SPIFFE IDs, keys, certificates, rotation.

``spiffe`` is pure (stdlib only) and shared with the injector, which validates
the ``mtls``/``allow-from`` annotations with it. The other modules run in the
agent; the only one that needs ``cryptography`` (key, CSR, checks of the
answer) is ``issue``, which runs in a short-lived child process so the
long-lived agent stays small (see ``rotation``).

Exceptions (``sidecar.errors`` tree)::

    SidecarError
     +-- IdentityError            an identity cannot be obtained or used
          +-- SignerUnavailable   the signer cannot be reached or answered 5xx (retry)
          +-- SignerDenied        the signer refused the request (a 4xx, says why)
          +-- CertificateRejected the answer failed our own checks (key, SAN, chain, clock)
"""
