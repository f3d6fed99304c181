from tests.proxy.conftest import proxy, upstream

__all__ = ["proxy", "upstream"]
