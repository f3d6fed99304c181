"""``sidecar capture``: install the transparent-capture rules in the pod's
network namespace, then exit (the first init container of a pod that asks
for ``proxy-capture: iptables``).

``settings`` (flags/env -> CaptureSettings), ``rules`` (CaptureSettings ->
iptables-restore input, pure), ``main`` (runs ip(6)tables-save/-restore).
The only sidecar code that runs with privileges: NET_ADMIN and NET_RAW.
"""
