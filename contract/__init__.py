"""The contract between the injector and the sidecar agent: one row per knob.

Pure and standard-library only: the injector (``injector.core``) and the agent
(``sidecar``) both import it, and it imports neither (import-linter checks it
in ``make check``). It ships in both images, inside the one wheel.

* ``knobs``: the shapes: ``Value`` (parse text -> type, format it back),
  ``Knob`` (a row: annotation, profile field, variable, flag, value, default,
  help, example), ``Role`` (a role's rows), ``Values`` (parsed rows, typed);
* ``values``: every kind of value (durations, rates, URLs, sources, ...);
  ``vault``: the Vault ones (mounts, secret paths, the secrets list);
  ``logvalues``: those only the logs role takes (sinks, globs, patterns);
  ``units``, ``quantities``, ``reload``, ``spiffe``: the parsers under them;
* ``layout``: the annotation prefix, the agent's UID, ports, paths, container
  and volume names;
* ``common``, ``proxy``, ``secrets``, ``config``, ``logs``, ``pod``: the rows;
* ``catalogue``: every role and annotation; ``reference``: the docs they make.

Where a new annotation goes (the one place): add a ``Knob`` row to its role's
module (``contract/<role>.py``), with ``annotation=`` (the key under
``sidecar.example.io/``), ``env=``/``flag=`` if the agent reads it,
``profile=`` if a SidecarProfile may set it, a ``default``, a ``help`` and an
``example``; put it in the role's ``ROLE`` tuple. Its ``field`` is its id,
unique among all rows (give ``id=`` when two roles share a field name; the
import fails otherwise). From that row:

* the injector parses the annotation (``injector.core.model``) and the
  profile field (``injector.core.specs``) with the row's parser, and writes
  the variable into the role's containers (``contract.knobs.environment``);
* the agent gets the flag and reads the variable with the same parser
  (``sidecar.options.read_knobs``); its settings dataclass needs a field named
  like the row's ``field`` (``values.get(ROW)``);
* ``make docs`` regenerates the README's annotation table and
  docs/runtime.md; ``sidecar-injector annotations`` prints it;
* tests/contract/ feeds the ``example`` through ``admit()`` into the agent's
  loader and checks it arrives.

Still by hand: the CRD's schema for a new profile field
(manifests/base/crd.yaml; a test compares it with the rows).

A new role: ``contract/<role>.py`` with its rows and a ``Role`` (agent port in
``layout``, ``trigger`` = the row whose annotation asks for it), appended to
``catalogue.ROLES``; ``sidecar/<role>/`` with ``settings.load`` built on
``read_knobs``; its containers in ``injector/core/containers.py`` and their
place in the pod in ``injector/core/render.py`` (``_sidecars``); a special
rule for its values, if any, in ``injector/core/decision.py``
(``_role_specs``; a role whose values are its rows alone needs none); the
role joins the ``roles-independent`` contract in pyproject.toml.

Errors: the parsers raise ``ValueError`` with a message saying what is
accepted; each side wraps it in its own exception tree (``InjectionDenied`` /
``ConfigError`` in the injector, ``UsageError`` in the agent).
"""
