"""``serve --operator``: the control loops, in the webhook's event loop (kopf).

``controller`` (``Operator``, ``OperatorOptions`` and the ``run`` hook the CLI
hands to ``injector.admission.serve``), ``lease`` (leader election),
``certificates`` (the certificate Secret and its rotation),
``webhookconfig`` (the caBundle), ``profiles`` (SidecarProfiles -> the
profile store, status writes), ``namespaces`` (namespace labels) and
``kube`` (the operator's own API requests). Imports the admission shell (the
``ServeContext`` it feeds) and the core; nothing imports it but the CLI.

Exceptions::

    InjectorError
    ├── ConfigError          an --operator flag is invalid
    └── KubeError            a request to the API server failed
        ├── Conflict         409: someone else wrote first
        └── NotFound         404
"""
