"""The pure core: ``render(pod, namespace, settings)`` and what it builds on.

No I/O, no web or operator framework, no Kubernetes client, no threads or
sockets (import-linter forbids them, transitively). Steps:

``annotations`` (the catalogue) -> ``model`` (annotations -> typed, frozen
``PodRequest``) -> ``plan`` (request + profile + pod -> ``Plan`` or ``Skip``)
-> ``containers`` (the containers and volumes of a plan) -> ``render`` (the
injected pod and its ``status``) -> ``patch`` (the JSON Patch). ``settings``
and ``profiles`` hold what the operator decides (SidecarProfiles).

Exceptions raised here (from ``injector.errors``)::

    InjectorError
    ├── ConfigError          a profile or settings document is invalid
    └── InjectionDenied      the pod cannot be injected as asked
        ├── InvalidAnnotation
        ├── NameCollision
        └── UnknownProfile
"""
