"""The admission shell: AdmissionReview v1 in, a JSON Patch out, over TLS.

``review`` (decode, ``admit``, encode; pure given settings), ``limits`` (the
caps on a review and its answer), ``webhook`` (the routes: /mutate, /healthz,
/readyz, /metrics), ``http`` (the HTTP/1.1 server and its limits),
``metrics`` (counters in shared memory), ``tls`` (a live-reloadable server
context), ``certs`` (CA and serving certificates, pure), ``workers`` (serving
processes and their supervisor) and ``serve`` (ties them together, with an
optional operator hook handed in by the CLI). Imports ``injector.core`` only,
never the operator.

Exceptions::

    InjectorError
    ├── BadReview            the review is malformed: HTTP 400
    ├── CertificateError     certificate material is missing or inconsistent
    └── ConfigError          --listen, --tls-cert/--tls-key cannot be used
"""
