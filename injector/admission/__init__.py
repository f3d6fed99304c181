"""The admission shell: AdmissionReview v1 in, a JSON Patch out, over TLS.

``review`` (decode, ``admit``, encode; pure given settings), ``webhook`` (the
FastAPI app: /mutate, /healthz, /readyz, /metrics), ``metrics``, ``tls`` (a
live-reloadable server context), ``certs`` (CA and serving certificates,
pure) and ``serve`` (uvicorn on a pre-bound socket, with an optional
operator hook handed in by the CLI). Imports ``injector.core`` only, never
the operator.

Exceptions::

    InjectorError
    ├── BadReview            the review is malformed: HTTP 400
    ├── CertificateError     certificate material is missing or inconsistent
    └── ConfigError          --listen, --tls-cert/--tls-key cannot be used
"""
