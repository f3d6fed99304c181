"""``sidecar logs``: the app's log files shipped without loss.

``settings`` holds every knob (one table, shared with the injector's
validation); ``tracker`` and ``finder`` decide which files to follow and
where to start (rotation, copytruncate, restarts); ``logfile`` reads one
file, ``framing`` turns its bytes into records, ``records`` encodes them for
the sink, ``batch`` gathers them compressed, ``shipper`` sends one batch at a
time and checkpoints ``positions`` after each acknowledgement, ``sinks``
speaks stdout, NDJSON over HTTP, Loki's push API and Elasticsearch's _bulk
API; ``reader`` runs the loop and the drain; ``main`` wires them. Exceptions:
``errors``. Standard library only.
"""
