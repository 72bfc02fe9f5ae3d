"""The import layering of han_deploy: each part imports only parts of lower layers, so there are no cycles.

Every ``import`` statement counts, including those inside functions (a lazy import is still a
dependency). The graph is read from the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import han_deploy

PACKAGE = Path(han_deploy.__file__).parent

# Top to bottom. A part may import any part of a lower layer; parts of one layer are independent.
LAYERS: list[set[str]] = [
    {"pipeline"},
    {"viz", "bench"},
    {"export"},
    {"train", "serve"},
    {"runtime"},
    {"evaluate"},
    {"data", "model"},
    {"contract"},
    {"config", "cli_args"},
]


def _part(module: str, names: list[str]) -> list[str]:
    """The han_deploy parts an import of ``module`` (with ``from`` names) reaches: ``han_deploy.X...`` -> X."""
    dotted = module.split(".")
    if dotted[0] != "han_deploy":
        return []
    return [dotted[1]] if len(dotted) > 1 else names


def import_graph() -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) -> the ``file:line`` of every import between two different parts."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts)
        if len(rel.parts) < 2:
            continue
        source = rel.parts[1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [t for alias in node.names for t in _part(alias.name, [])]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                targets = _part(module, [alias.name for alias in node.names])
            else:
                continue
            for target in targets:
                if target != source:
                    edges.setdefault((source, target), []).append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return edges


def _layer(part: str) -> int:
    for i, layer in enumerate(LAYERS):
        if part in layer:
            return i
    raise AssertionError(f"han_deploy part {part!r} is in no layer of tests/test_layers.py: add it to LAYERS")


def test_every_import_goes_down_the_layers() -> None:
    edges = import_graph()
    assert edges, "no imports found: the graph reader is broken"
    upward = {edge: where for edge, where in edges.items() if _layer(edge[1]) <= _layer(edge[0])}
    assert not upward, f"imports against the layering (importer, imported): {upward}"


def test_the_graph_reader_sees_relative_and_lazy_imports() -> None:
    edges = import_graph()
    assert ("runtime", "evaluate") in edges  # runtime/gallery.py: a function-level ``from ..evaluate.rerank import``
    assert ("model", "config") in edges  # model/__init__.py: ``from ..config import``
    assert any(where.startswith("han_deploy/bench/models.py") for where in edges[("bench", "model")])
