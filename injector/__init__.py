"""The admission side of the sidecar injector, in four layers (each imports
only the layers below it; import-linter checks it in ``make check``):

* ``injector.cli``: ``sidecar-injector serve | inject | explain | annotations``;
  reads configuration once and wires the layers below together;
* ``injector.operator``: the kopf control loops (certificates, caBundle,
  SidecarProfiles, namespace labels, leader Lease), run inside ``serve``;
* ``injector.admission``: AdmissionReview envelope, the FastAPI app, TLS and
  the uvicorn server;
* ``injector.core``: the pure injection: annotations -> typed request ->
  plan -> injected pod -> JSON Patch. No I/O, no framework.

Exceptions (``injector.errors`` unless noted)::

    InjectorError
    ├── ConfigError                 settings, a profile or a flag is invalid (exit 2)
    ├── InjectionDenied             the pod is denied with this message
    │   ├── InvalidAnnotation
    │   ├── NameCollision
    │   └── UnknownProfile
    ├── NotAPod                     a pod (template) of the wrong shape
    ├── BadReview                   a malformed AdmissionReview (HTTP 400)
    ├── CertificateError            injector.admission.certs
    └── KubeError                   injector.operator.kube
        ├── Conflict
        └── NotFound
"""

__version__ = "0.1.0"
