"""``python -m demo`` (``make demo``): the webhook end to end on this machine."""
