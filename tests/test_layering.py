"""The package is layered: each part imports only the parts below it, deferred
imports (inside functions) included, so there is no import circle.

A part is a top-level module (``graph``, ``variable``, ...) or a subpackage
(``ops``, ``transform``, ``numpy``, ``nn``, ...); modules inside one subpackage
may import each other.
"""
from __future__ import annotations

import ast
import pathlib

import neuronika

PACKAGE = pathlib.Path(neuronika.__file__).parent

#: Bottom to top. A part may import only parts listed before it.
LAYERS = ["errors", "backend", "random", "graph", "ops", "transform", "variable", "numpy", "creation",
          "tracing", "symbolic", "loops", "batching", "functional", "testing", "distributed", "nn", "optim", "data", "__init__"]


def _part(path):
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imports(path):
    """The parts of neuronika a module imports, anywhere in its body."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - node.level + 1])
                target = base + (node.module.split(".") if node.module else [])
                if not target:                       # ``from . import x`` at the top level
                    target = [alias.name for alias in node.names]
                    found.update(t for t in target)
                    continue
                found.add(target[0])
            elif node.module and node.module.split(".")[0] == "neuronika":
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "neuronika":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def test_every_import_goes_down_the_layers():
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = _part(path)
        assert part in rank, f"{part} (from {path}) is missing from LAYERS"
        for target in _imports(path):
            if target == part or target not in rank:
                continue
            if rank[target] >= rank[part]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)
