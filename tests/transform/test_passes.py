"""The passes over generated code: what they drop and free, and that each is one sweep."""
import gc
import time

import gast

from neuronika.transform import passes
from neuronika.transform.passes import Line


def assign(target, *reads):
    return Line(f"{target} = f({', '.join(reads)})", list(reads), [target], target)


def iadd(target, *reads):
    return Line(f"{target} += f({', '.join(reads)})", [target, *reads], [target], target, aug=True)


def texts(lines):
    return [line.text for line in lines]


# ---- drop_dead_lines -------------------------------------------------------------------------

def test_dead_assignments_go_and_what_they_alone_read_goes_with_them():
    lines = [assign("a", "x"), assign("b", "a"), assign("c", "x"), assign("d", "c")]
    assert texts(passes.drop_dead_lines(lines, ["d"])) == ["c = f(x)", "d = f(c)"]


def test_an_update_in_place_of_a_dead_gradient_goes_with_its_assignment():
    # floor's adjoint is zero: g gets a first contribution and an in-place one, and nothing reads it
    lines = [assign("g", "seed"), iadd("g", "seed"), assign("r", "seed")]
    assert texts(passes.drop_dead_lines(lines, ["r"])) == ["r = f(seed)"]


def test_an_update_in_place_keeps_the_assignment_it_updates():
    lines = [assign("g", "x"), iadd("g", "y"), assign("r", "g")]
    assert texts(passes.drop_dead_lines(lines, ["r"])) == ["g = f(x)", "g += f(y)", "r = f(g)"]


def test_a_value_overwritten_before_it_is_read_is_dead():
    lines = [assign("g", "x"), assign("g", "y"), assign("r", "g")]
    assert texts(passes.drop_dead_lines(lines, ["r"])) == ["g = f(y)", "r = f(g)"]


def test_statements_that_are_not_assignments_stay():
    guard = Line("if int(v1) != 3:\n    raise Retrace", ["v1"], [])
    lines = [assign("v1", "x"), guard, assign("v2", "x")]
    assert texts(passes.drop_dead_lines(lines, [])) == ["v1 = f(x)", "if int(v1) != 3:\n    raise Retrace"]


def test_drop_dead_assignments_over_gast_agrees():
    body = gast.parse("a = x\nb = a\nc = x\nd = c\ng = seed\ng += seed\ne = d\ne += a").body
    kept = passes.drop_dead_assignments(body, ["e"])
    names = [s.targets[0].id if isinstance(s, gast.Assign) else "+" + s.target.id for s in kept]
    assert names == ["a", "c", "d", "e", "+e"]


# ---- free_lines ------------------------------------------------------------------------------

def test_values_are_freed_after_their_last_use_except_those_kept():
    lines = [assign("a", "x"), assign("b", "a"), assign("c", "b", "a")]
    assert texts(passes.free_lines(lines, ["c"])) == ["a = f(x)", "b = f(a)", "c = f(b, a)", "del a, b"]
    assert texts(passes.free_lines(lines, ["c", "a"])) == ["a = f(x)", "b = f(a)", "c = f(b, a)", "del b"]


def test_arguments_are_never_freed():
    lines = [assign("a", "x"), assign("b", "a")]
    assert texts(passes.free_lines(lines, ["b"]))[-1] == "del a"


def test_small_values_are_freed_in_batches_and_tiny_ones_not_at_all():
    lines = [assign(f"v{k + 1}", f"v{k}") for k in range(10)]
    small = {f"v{k}" for k in range(1, 10)}
    out = texts(passes.free_lines(lines, ["v10"], deferred=small, every=4))
    dels = [t for t in out if t.startswith("del")]
    assert dels == ["del v1, v2, v3, v4", "del v5, v6, v7, v8", "del v9"]
    assert out.index("del v1, v2, v3, v4") == out.index("v5 = f(v4)") + 1
    # a large value is freed at once and takes the waiting small ones with it
    out = texts(passes.free_lines(lines, ["v10"], deferred=small - {"v3"}, every=4))
    assert out[out.index("v4 = f(v3)") + 1] == "del v1, v2, v3"
    out = texts(passes.free_lines(lines, ["v10"], kept=small))
    assert not [t for t in out if t.startswith("del")]


# ---- one sweep each ----------------------------------------------------------------------------

def _best_time(fn, repeats=3):
    # the collector off, as code generation runs: this times the pass, not the collector
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return best


def _chain(n):
    # v1 = v0 * x, v2 = v1 * x, ...: each value read once, by the next statement
    def name(identifier, ctx):
        return gast.Name(identifier, ctx, None, None)

    return [gast.Assign([name(f"v{k + 1}", gast.Store())],
                        gast.BinOp(name(f"v{k}", gast.Load()), gast.Mult(), name("x", gast.Load())), None)
            for k in range(n)]


def test_drop_dead_assignments_is_linear():
    # It used to build a set of every name read for each statement (a 20,000-statement body
    # took seconds, 100,000 minutes). Quadrupling the size must take about four times as long.
    small, large = _chain(5_000), _chain(20_000)
    keep = ["v5000"], ["v20000"]
    t_small = _best_time(lambda: passes.drop_dead_assignments(small, keep[0]))
    t_large = _best_time(lambda: passes.drop_dead_assignments(large, keep[1]))
    assert t_large < 8 * t_small + 0.05, (t_small, t_large)
    assert len(passes.drop_dead_assignments(large, keep[1])) == 20_000


def test_line_passes_are_linear():
    def lines(n):
        return [assign(f"v{k + 1}", f"v{k}", "x") for k in range(n)]

    small, large = lines(10_000), lines(40_000)
    for run in (lambda ls: passes.drop_dead_lines(ls, [ls[-1].target]),
                lambda ls: passes.free_lines(ls, [ls[-1].target])):
        t_small = _best_time(lambda: run(small))
        t_large = _best_time(lambda: run(large))
        assert t_large < 8 * t_small + 0.05, (t_small, t_large)
