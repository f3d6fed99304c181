"""``make bench``: webhook, proxy and agents against baselines measured in the same run.

These machines are noisy, so every figure is printed next to a baseline taken
in the same run (the server's own no-op endpoint, direct traffic, a bare
Envoy) as a ratio. Everything runs on 127.0.0.1, bounded in time.
"""
