"""The top layer: ``sidecar-injector`` (``injector.cli.main``).

Reads configuration once (flags, ``--config``), builds the typed values the
layers below take, and wires them: ``serve`` gets the admission app and, with
``--operator``, the operator's hook; ``inject``/``explain`` run the core
directly over YAML manifests (``injector.cli.offline``, with ``injector.core.pods``
finding the pods the webhook would see). Errors: any
``InjectorError`` becomes one line on stderr and its ``exit_code``.
"""
