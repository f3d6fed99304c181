"""Mutual TLS between injected pods: the pure core of the operator's side.

* ``signer``: mesh roots, CSR checks, leaf certificates within the validity
  rules Kubernetes applies to PodCertificateRequests;
* ``trust``: the root-rotation plan (publish, switch once agents trust the new
  root, retire after one certificate lifetime, alarms).

No I/O here: the operator's ``identity_review`` (who is asking),
``identity_service`` (the agents' CSR endpoint) and ``mesh_ca`` (roots in a
Secret, bundles in ConfigMaps, rotation) call into it, and so does the
PodCertificateRequest front door.

Exceptions::

    InjectorError
     +-- MeshError              mesh state or configuration is unusable
          +-- RequestDenied     a certificate request is refused (reason, HTTP status)
"""
