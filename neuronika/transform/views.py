"""Adjacent views merged: a pass over the ``Line``s of one generated function, the first
before it is compiled.

A statement that views a value another view statement made, where nothing else reads that
value, views the first one's source directly: ``v2 = v1.T`` after ``v1 = p0.T`` becomes
``v2 = p0`` (two 2-D transposes are the identity), ``xp.reshape(xp.reshape(x, s1), s2)`` is
``xp.reshape(x, s2)`` (a reshape reads the elements in the same order whatever came
before), and two ``xp.permute_dims`` compose into one (or into the source, where they undo
each other). The intermediate statement goes. A chain of views in the forward makes a chain
in the backward (a reshape's adjoint is a reshape), so both lose a call per merged pair.
These are the array-API standard's own views: the pass serves every namespace.

>>> import numpy as np, neuronika
>>> x = neuronika.from_ndarray(np.ones((3, 4))).requires_grad()
>>> y = (x.reshape(12).reshape(4, 3) * 2.0).T.T.sum()
>>> with neuronika.config(compile="always"):
...     source = neuronika.transform.source(y)
>>> source.count("xp.reshape(") == 2 and ".T" not in source       # one each way
True
>>> neuronika.transform.cache_clear()
"""
from __future__ import annotations

import ast

from .passes import Line, reads_and_writes

_MARKS = (".T", "xp.reshape(", "xp.permute_dims(")


def _view(expr):
    """(kind, source name, detail) of a view expression over a name: ('T', name, None),
    ('reshape', name, the shape's node), ('permute', name, the axes); else None."""
    if expr.__class__ is ast.Attribute and expr.attr == "T" and expr.value.__class__ is ast.Name:
        return "T", expr.value.id, None
    if (expr.__class__ is not ast.Call or expr.keywords or len(expr.args) != 2
            or expr.func.__class__ is not ast.Attribute or expr.func.value.__class__ is not ast.Name
            or expr.func.value.id != "xp" or expr.args[0].__class__ is not ast.Name):
        return None
    name, detail = expr.args[0].id, expr.args[1]
    if expr.func.attr == "reshape":
        return "reshape", name, detail
    if expr.func.attr == "permute_dims":
        try:
            axes = ast.literal_eval(detail)
        except ValueError:
            return None
        return "permute", name, tuple(axes)
    return None


def _composed(inner, outer, text):
    """The text of the view ``outer`` applied to ``inner``'s result, taken from ``inner``'s
    source directly, or None where the two do not compose. ``text``: ``outer``'s statement."""
    kind, source, detail = inner
    outer_kind, _, outer_detail = outer
    if kind == "T" and outer_kind == "T":
        return source
    if kind == "reshape" and outer_kind == "reshape":
        return f"xp.reshape({source}, {text[outer_detail.col_offset:outer_detail.end_col_offset]})"
    if kind == "permute" and outer_kind == "permute" and len(detail) == len(outer_detail):
        axes = tuple(detail[a] for a in outer_detail)
        return source if axes == tuple(range(len(axes))) else f"xp.permute_dims({source}, {axes})"
    return None


def merged_views(lines, keep):
    """``lines`` with each view of a view that nothing else reads taken from the first view's
    source (see the module docstring); ``keep``: the names read after the last line."""
    if not any(mark in line.text for line in lines for mark in _MARKS):
        return lines
    uses, stores = reads_and_writes(lines, keep)
    made = {}           # name -> (its view, the position of the statement that made it)
    out = list(lines)
    dropped = set()
    for k, line in enumerate(lines):
        target, text = line.target, line.text
        if target is None or line.aug or "\n" in text or not text.startswith(target + " = ") \
                or not any(mark in text for mark in _MARKS):
            continue
        try:
            expr = ast.parse(text).body[0].value
        except SyntaxError:
            continue
        view = _view(expr)
        if view is None:
            continue
        source = view[1]
        found = made.get(source)
        if (found is not None and uses.get(source) == 1 and source not in keep
                and stores.get(found[0][1], 0) <= 1):
            new = _composed(found[0], view, text)
            if new is not None:
                inner = found[0][1]
                loads = [inner] + [n for n in line.loads if n != source]
                out[k] = line = Line(f"{target} = {new}", loads, line.stores, target)
                dropped.add(found[1])
                try:
                    view = _view(ast.parse(new, mode="eval").body) if new != inner else None
                except SyntaxError:
                    view = None
        if view is not None and stores.get(target) == 1:
            made[target] = (view, k)
    return out if not dropped else [line for k, line in enumerate(out) if k not in dropped]
