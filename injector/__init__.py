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

Exceptions (``injector.errors`` unless noted); each message names the
thing, the problem and the fix::

    InjectorError
    ├── ConfigError                 settings, a profile or a flag is invalid (exit 2)
    ├── InjectionDenied             the pod is denied with this message (and its warnings)
    │   ├── NameCollision           a container, volume, port or mount the injector adds
    │   └── UnknownProfile          the pod names no known SidecarProfile
    ├── NotAPod                     a pod (template) lacks a field the core reads
    ├── BadReview                   a malformed AdmissionReview (HTTP 400)
    ├── CertificateError            injector.admission.certs: unusable certificate material
    ├── KubeError                   injector.operator.kube: an API request failed
    │   ├── Conflict                409: someone else wrote first
    │   └── NotFound                404
    └── MeshError                   injector.mesh.signer: a certificate request refused
        └── RequestDenied

The value parsers of ``contract`` raise ``ValueError``; the core turns it
into ``InjectionDenied`` (annotations) or ``ConfigError`` (profiles).
"""

__version__ = "0.1.0"
