"""The sidecar runtime agent: ``sidecar proxy|secrets|config|logs``.

The agent stays small and quick to start: the common modules here import only
the standard library. Each role lives in its own subpackage and is imported
only when that role runs.
"""

__version__ = "0.1.0"
