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

import re

from .passes import Line, reads_and_writes

# the three views as the templates write them (over a name; a shape that is a name or a
# literal tuple); matched, not parsed: the pass reads every statement of long programs
_MARKS = (".T", "xp.reshape(", "xp.permute_dims(")
_TRANSPOSE = re.compile(r"(\w+) = (\w+)\.T")
_RESHAPE = re.compile(r"(\w+) = xp\.reshape\((\w+), (\w+|\([-\d, ]*\))\)")
_PERMUTE = re.compile(r"(\w+) = xp\.permute_dims\((\w+), \(([\d, ]*)\)\)")


def _view(text):
    """(target, (kind, source name, detail)) of a view statement: ('T', name, None),
    ('reshape', name, the shape's text), ('permute', name, the axes); else None."""
    found = _TRANSPOSE.fullmatch(text)
    if found is not None:
        return found[1], ("T", found[2], None)
    found = _RESHAPE.fullmatch(text)
    if found is not None:
        return found[1], ("reshape", found[2], found[3])
    found = _PERMUTE.fullmatch(text)
    if found is not None:
        return found[1], ("permute", found[2], tuple(int(a) for a in found[3].split(",") if a.strip()))
    return None


def _composed(inner, outer):
    """The text of the view ``outer`` applied to ``inner``'s result, taken from ``inner``'s
    source directly, or None where the two do not compose."""
    kind, source, detail = inner
    outer_kind, _, outer_detail = outer
    if kind == "T" and outer_kind == "T":
        return source
    if kind == "reshape" and outer_kind == "reshape":
        return f"xp.reshape({source}, {outer_detail})"
    if kind == "permute" and outer_kind == "permute" and len(detail) == len(outer_detail):
        axes = tuple(detail[a] for a in outer_detail)
        return source if axes == tuple(range(len(axes))) else f"xp.permute_dims({source}, {axes})"
    return None


def merged_views(lines, keep):
    """``lines`` with each view of a view that nothing else reads taken from the first view's
    source (see the module docstring); ``keep``: the names read after the last line."""
    found = {}          # position -> the view its statement makes
    for k, line in enumerate(lines):
        if line.target is not None and not line.aug and any(mark in line.text for mark in _MARKS):
            view = _view(line.text)
            if view is not None and view[0] == line.target:
                found[k] = view
    targets = {view[0] for view in found.values()}
    if not any(view[1][1] in targets for view in found.values()):
        return lines                    # no view of a view
    uses, stores = reads_and_writes(lines, keep)
    made = {}           # name -> (its view, the position of the statement that made it)
    out = list(lines)
    dropped = set()
    for k, (target, view) in found.items():
        line = lines[k]
        source = view[1]
        before = made.get(source)
        if (before is not None and uses.get(source) == 1 and source not in keep
                and stores.get(before[0][1], 0) <= 1):
            new = _composed(before[0], view)
            if new is not None:
                origin = before[0][1]
                loads = [origin] + [n for n in line.loads if n != source]
                out[k] = line = Line(f"{target} = {new}", loads, line.stores, target)
                dropped.add(before[1])
                again = _view(line.text) if new != origin else None
                view = None if again is None else again[1]
        if view is not None and stores.get(target) == 1:
            made[target] = (view, k)
    return out if not dropped else [line for k, line in enumerate(out) if k not in dropped]
