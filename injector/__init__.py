"""The admission side of the sidecar injector.

``injector.model`` parses pod annotations, ``injector.render`` injects (pure),
``injector.patch`` turns the result into a JSON Patch, ``injector.webhook``
serves it as a FastAPI app and ``injector.cli`` is ``sidecar-injector``.
"""

__version__ = "0.1.0"
