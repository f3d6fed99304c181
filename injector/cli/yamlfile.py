"""YAML files the CLI reads (``-f`` manifests, ``--config``), read defensively:
unreadable, invalid, too deeply nested, recursive through aliases, or
expanding through aliases past ``MAX_NODES`` (a "billion laughs") is a
``ConfigError`` naming the file, never a traceback or a hang.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from injector.errors import ConfigError


def read_yaml(filename: str, where: str) -> list[Any]:
    """The non-empty documents of ``filename`` (``-``: standard input); ``where``
    starts every error message (``-f app.yaml``, ``config file p.yaml``)."""
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be read") from None
    problem = expansion_problem(documents, MAX_NODES)
    if problem:
        raise ConfigError(f"{where}: {problem}; write the objects out without aliases")
    return documents


MAX_NODES = 5_000_000  # of the manifests with every YAML alias expanded


def expansion_problem(root: Any, limit: int) -> str | None:
    """Why ``root`` cannot be walked as a tree in bounded time: a cycle through YAML
    aliases, or more than ``limit`` nodes once shared ones count per reference.
    Linear in the distinct nodes (each is sized once)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = [
            c for c in (node.values() if isinstance(node, dict) else node)
            if isinstance(c, dict | list)
        ]  # fmt: skip
        if children_done:
            open_nodes.discard(key)
            sizes[key] = min(limit + 1, 1 + len(node) + sum(sizes[id(c)] for c in children))
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            return "YAML aliases make it contain itself"
        open_nodes.add(key)
        stack.append((node, True))
        stack += [(c, False) for c in children if id(c) not in sizes]
    if sizes.get(id(root), 0) > limit:
        return f"YAML aliases expand it to more than {limit:,} values"
    return None
