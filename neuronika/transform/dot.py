"""A program's graph as Graphviz DOT text: ``to_dot``.

Read-only: it walks the nodes behind the roots (``graph.walk``) and changes nothing, so
drawing a graph neither compiles it nor marks its nodes as seen.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..graph import Node, Witness, format_where, walk

#: Graphviz attributes per kind of node.
STYLES = {
    "op": 'shape=ellipse',
    "input": 'shape=box, style=filled, fillcolor="#dddddd"',
    "parameter": 'shape=box, style=filled, fillcolor="#ffd27f"',
    "constant": 'shape=box, style="dashed"',
    "number": 'shape=plaintext',
}


def kind(node: Node) -> str:
    """How ``to_dot`` draws ``node``: "op", or for a leaf "parameter" (needs a gradient),
    "constant" (a value computed once from other variables, read by the program as a leaf:
    ``graph.Constant``),
    "number" (a Python or NumPy scalar operand) or "input" (any other array)."""
    if node.op is not None:
        return "op"
    if node.requires_grad:
        return "parameter"
    if node.const is not None and node.const.__class__ is not Witness:
        return "constant"
    if node.key[0] == "weak" or (node.shape == () and not isinstance(node.value, np.ndarray)
                                 and node.value is not None):
        return "number"
    return "input"


def _roots(objects, where):
    """The graph nodes among ``objects`` (variables, nodes, and lists / tuples / dicts of them)."""
    found = []

    def visit(obj):
        node = getattr(obj, "_node", obj)
        if isinstance(node, Node):
            found.append(node)
        elif isinstance(obj, dict):
            for value in obj.values():
                visit(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                visit(value)

    for obj in objects:
        visit(obj)
    if not found:
        kinds = ", ".join(sorted({type(o).__name__ for o in objects})) or "nothing"
        raise TypeError(f"to_dot: {where} holds no variable (got {kinds}); give the variable a graph "
                        f"ends in, or a function and arguments for which it returns variables (pass "
                        f"arrays as neuronika.from_ndarray(a), or call a Module, which takes arrays)")
    return found


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(node):
    return "(" + ", ".join(str(n) for n in node.shape) + ("," if len(node.shape) == 1 else "") + ")"


def _label(node, what, names):
    dtype = str(node.dtype)
    if what == "op":
        attrs = ""
        if node.attrs:
            text = ", ".join(repr(a) for a in node.attrs)
            if len(text) <= 40:
                attrs = f" [{text}]"
        return f"{node.op.name}{attrs}\n{_shape(node)} {dtype}"
    if what == "number":
        value = node.value
        return f"{value.item() if hasattr(value, 'item') else value!r}"
    return f"{names.get(node, what)}\n{_shape(node)} {dtype}"


def to_dot(root, *args, render: str | os.PathLike | None = None, name: str = "neuronika", **kwargs) -> str:
    """The graph behind ``root`` as Graphviz DOT text: one node per value, labelled with its
    op (and short attributes), shape and dtype; leaves drawn as boxes: parameters (they
    need a gradient; a Module's by their names) filled orange, other inputs grey, constants dashed, numbers as plain
    text; the results have a double border. Edges go from an input to the op that reads it
    (one per operand, numbered where an op has several).

    ``root``: a variable, a list / tuple / dict of them, or a callable (a function, a
    Module); a callable is called with ``*args`` and ``**kwargs`` and its results are drawn
    (give it variables, or arrays where it takes arrays, as a Module does). Nothing is
    computed.

    ``render``: a file name (``"graph.png"``, ``"graph.svg"``, ``"graph.pdf"``): rendered by
    the ``graphviz`` package (0.19 or later) and Graphviz's ``dot`` program when both are
    installed; otherwise a warning says so and only the text is returned.

    >>> import numpy as np, neuronika
    >>> w = neuronika.ones((3, 2)).requires_grad()
    >>> text = neuronika.transform.to_dot(lambda x: (x.mm(w) + 1.0).tanh().sum(), neuronika.ones((4, 3)))
    >>> print(text.splitlines()[0], text.count("->"), "edges")
    digraph neuronika { 6 edges
    """
    if callable(root) and not isinstance(getattr(root, "_node", None), Node):
        roots = _roots([root(*args, **kwargs)], f"what {getattr(root, '__name__', type(root).__name__)} returned")
    else:
        if args or kwargs:
            raise TypeError(f"to_dot: arguments are for a function to call, but the first argument is a "
                            f"{type(root).__name__}, not a callable")
        roots = _roots([root], "the first argument")
    # a Module's parameters are labelled with their names
    named = getattr(root, "named_parameters", None)
    names = {getattr(p, "_node", None): n for n, p in named()} if callable(named) else {}
    nodes = sorted({n for r in roots for n in walk(r)}, key=lambda n: n.serial)
    ids = {node: f"n{k}" for k, node in enumerate(nodes)}
    results = set(roots)
    lines = [f"digraph {_quote(name) if not name.isidentifier() else name} {{",
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8];']
    for node in nodes:
        what = kind(node)
        attrs = [f"label={_quote(_label(node, what, names))}", STYLES[what]]
        if node in results:
            attrs.append("peripheries=2")
        if node.where:
            attrs.append(f"tooltip={_quote(format_where(node.where))}")
        lines.append(f"  {ids[node]} [{', '.join(attrs)}];")
    for node in nodes:
        several = len(node.inputs) > 1
        for slot, source in enumerate(node.inputs):
            label = f" [label={slot}]" if several else ""
            lines.append(f"  {ids[source]} -> {ids[node]}{label};")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if render:
        _render(text, render)
    return text


def _render(text, path):
    try:
        import graphviz
    except ImportError:
        warnings.warn(f"to_dot: {path} not written: the graphviz package is not installed "
                      f"(pip install graphviz; it also needs Graphviz's dot program)", stacklevel=3)
        return
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1][1:].lower() or "png"
    try:
        graphviz.Source(text).render(outfile=path, format=fmt, cleanup=True)
    except graphviz.ExecutableNotFound:
        warnings.warn(f"to_dot: {path} not written: Graphviz's dot program is not on PATH", stacklevel=3)


__all__ = ["to_dot"]
