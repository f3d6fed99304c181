"""``sidecar proxy``: Envoy configured, validated, supervised and drained by the agent.

``settings`` (flags/env -> ProxySettings), ``bootstrap`` (ProxySettings -> Envoy
v3 bootstrap), ``admin`` (Envoy admin client), ``supervisor`` (the Envoy
process), ``main`` (the entry point). Python never sits on the data path.
"""
