"""The pure core: ``render(pod, namespace, settings)`` and what it builds on.

No I/O, no web or operator framework, no Kubernetes client, no threads or
sockets (import-linter forbids them, transitively). Steps:

``model`` (annotations -> typed, frozen ``PodRequest``, by the contract's
rows) -> ``decision`` (request + profile + pod -> ``Plan`` or ``Skip``, with
``rolespecs`` for each role's values) -> ``containers`` (the containers and
volumes of a plan) -> ``render`` (the injected pod and its ``status``) ->
``patch`` (the JSON Patch). ``settings``/``specs``/``profiles`` hold what the
operator decides (SidecarProfiles); ``views`` types the pod the core reads,
``pods`` finds and checks pods, ``ports``, ``reasons`` (explain) and
``status`` the rest.

Exceptions raised here (from ``injector.errors``)::

    InjectorError
    ├── ConfigError          a profile or settings document is invalid
    ├── NotAPod              a pod lacks a field the core reads, or has it in the wrong shape
    └── InjectionDenied      the pod cannot be injected as asked
        ├── NameCollision
        └── UnknownProfile
"""
