"""``sidecar secrets``: Vault kubernetes auth, secrets rendered to files.

``settings`` reads flags and variables once; ``vault`` is a small stdlib
HTTP client for Vault's API; ``auth`` logs in and keeps the token alive;
``templates`` renders a secret's data to bytes; ``agent`` fetches, renders,
writes, renews and re-fetches on schedule; ``state`` hands the token and
leases from the init container to the refresher; ``main`` wires them.

Not hvac: it pulls in ``requests`` (and urllib3, idna, charset-normalizer,
certifi), doubling the agent's memory and start-up time for the half-dozen
endpoints used here.
"""
