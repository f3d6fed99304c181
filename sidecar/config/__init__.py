"""``sidecar config``: configuration from a URL or a ConfigMap into a shared volume.

``settings`` reads flags and variables once; ``sources`` fetches (HTTP with
ETag, or the Kubernetes API through ``kube``'s minimal client); ``syncer``
writes the file set atomically and tells the app once per real change;
``main`` wires them for ``--init`` (once) or as the refresher (forever).
"""
