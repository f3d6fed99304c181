"""Mutual TLS between injected pods: the operator's side.

* ``signer``: the pure signer core (roots, CSR checks, leaf certificates with
  the validity rules Kubernetes applies to PodCertificateRequests);
* ``trust``: the pure root-rotation plan (publish, switch once agents trust
  the new root, retire after one certificate lifetime, alarms);
* ``review``: who is asking: TokenReview with our audience, bound to the live pod;
* ``service``: the CSR endpoint the agents call (FastAPI), same core for every
  front door; ``pcr``: PodCertificateRequests where the cluster serves them;
* ``keeper``: the leader's loop that stores roots, publishes bundles and
  rotates (Secret, ConfigMaps, Events).

Exceptions::

    InjectorError
     +-- MeshError              mesh state or configuration is unusable
          +-- RequestDenied     a certificate request is refused (reason, HTTP status)
"""
