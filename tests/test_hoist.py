"""Work moved out of a loop: a cell's nodes that depend on no carry run before the loop
(``transform.loops.hoisted``), and those only its ys need run after it (``sunk``), for every
step at once (the batching rules); the cell reads the first as new xs or constants and gives
what the second read as new ys.

Checked on ``neuronika.scan`` and on rolled Python loops: what moves (the cells' sources),
what stays (random draws, ops without a batching rule, views), values and gradients against
the same loop with nothing moved and against central finite differences to second order,
reversed loops, gradients in the xs, vmap and no_grad.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import neuronika as nk
from neuronika.testing import check_grads
from neuronika.transform import loops

RNG = np.random.default_rng(5)


@pytest.fixture
def unmoved():
    """Run a function with nothing moved out of its loops (caches emptied around it)."""
    def run(fn, *args):
        nk.transform.cache_clear()
        loops.HOIST = loops.DEFER = False
        try:
            return fn(*args)
        finally:
            loops.HOIST = loops.DEFER = True
            nk.transform.cache_clear()
    yield run
    loops.HOIST = loops.DEFER = True


def products(text):
    """How many matrix products ``text`` makes (``@``, or ``xp.dot`` for a small one)."""
    return text.count("@") + text.count("xp.dot(")


def close(a, b, rtol=1e-12, atol=1e-13):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def sections(source):
    """The generated program's functions by name: the outer one first, then each cell's."""
    parts = re.split(r"\n# (cell_\d+|call_\d+): [^\n]*\n", "\n" + source)
    return {"outer": parts[0], **{parts[k]: parts[k + 1] for k in range(1, len(parts) - 1, 2)}}


def scan_rnn(Wx, Wh, b, X, h0, reverse=False):
    def cell(h, x):
        # x @ Wx and Wh * 0.5 depend on no carry: they run before the loop
        h = (x @ Wx + h @ (Wh * 0.5) + b).tanh()
        return h, (x * x).sum() * h
    hT, ys = nk.scan(cell, h0, X, reverse=reverse)
    return (ys * ys).sum() + (hT * hT).sum()


def data(T=7, B=3, D=4, H=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((D, H)) * 0.5, rng.standard_normal((H, H)) * 0.5,
            rng.standard_normal(H) * 0.1, rng.standard_normal((T, B, D)), rng.standard_normal((B, H)) * 0.1)


def test_the_work_that_depends_on_no_carry_leaves_the_cell():
    args = data()
    f = nk.value_and_grad(scan_rnn, argnums=(0, 1, 2, 3, 4))
    with nk.config(compile="always"):
        f(*args)
        parts = sections(f.source(*args))
    cell = parts["cell_0"]
    forward = cell.split("def backward")[0]
    assert products(forward) == 1                  # h @ (Wh * 0.5) only
    # Wh * 0.5 and (x * x).sum() before the loop, the y's product with h after it
    assert " * " not in forward and "xp.sum" not in forward
    outer = parts["outer"]
    assert "xp.reshape" in outer and products(outer)    # x @ Wx for every step: one product


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 3, 4, 5), (5, 1, 2, 3)])
def test_values_and_gradients_equal_the_loop_with_nothing_moved(unmoved, shape, reverse):
    args = data(*shape)
    fn = nk.value_and_grad(lambda *a: scan_rnn(*a, reverse=reverse), argnums=(0, 1, 2, 3, 4))
    want = unmoved(fn, *args)
    nk.transform.cache_clear()
    for mode in ("never", "always"):
        with nk.config(compile=mode):
            got = fn(*args)
        close(got[0], want[0])
        for g, w in zip(got[1], want[1]):
            assert g.shape == w.shape and g.dtype == w.dtype
            close(g, w)


def test_finite_differences_to_second_order():
    Wx, Wh, b, X, h0 = data(T=4, B=2, D=3, H=3, seed=1)
    check_grads(lambda wx, wh, x: scan_rnn(wx, wh, b, x, h0), Wx, Wh, X, order=2,
                rtol=1e-5, atol=1e-7)


def loop_rnn(Wx, Wh, b, X):
    """The RNN as a Python loop over X's steps (rolled into a scan when compiled)."""
    h = (X[0] @ Wx + b).tanh()
    for t in range(1, X.shape[0]):
        h = (X[t] @ Wx + h @ Wh + b).tanh()
    return (h * h).mean()


def test_a_rolled_python_loop_moves_its_input_product_out(unmoved):
    Wx, Wh, b, X, _ = data(T=40, seed=2)

    f = nk.value_and_grad(loop_rnn, argnums=(0, 1, 2))
    want = unmoved(f, Wx, Wh, b, X)
    with nk.config(compile="always"):
        got = f(Wx, Wh, b, X)
        parts = sections(f.source(Wx, Wh, b, X))
    assert products(parts["cell_0"].split("def backward")[0]) == 1
    # the gradients in Wx and Wh: one product each over every step after the backward loop
    # (Wh's: loops.deferred_products), not one per step; the step's one product is dh's
    assert products(parts["cell_0"].split("def backward")[1]) == 1
    close(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        close(g, w)
    # another length (the steps are -1 in the reshapes: one program, test_scan's families)
    with nk.config(compile="always"):
        close(f(Wx, Wh, b, X[:25])[1][0], unmoved(f, Wx, Wh, b, X[:25])[1][0])


def test_a_sum_adds_its_carry_free_terms_before_the_loop(unmoved):
    # x_t @ Wx + h @ Wh + b: (x_t @ Wx + b) for every step before the loop, so a step adds
    # once, and b's gradient is one sum after the backward loop, not a sum and an addition
    # per step
    Wx, Wh, b, X, h0 = data(T=30, seed=7)

    def scanned(Wx, Wh, b, X):
        return (nk.scan(lambda h, x: ((x @ Wx + h @ Wh + b).tanh(), None), h0, X)[0] ** 2).mean()

    for fn in (scanned, loop_rnn):
        f = nk.value_and_grad(fn, argnums=(0, 1, 2))
        want = unmoved(f, Wx, Wh, b, X)
        with nk.config(compile="always"):
            got = f(Wx, Wh, b, X)
            forward, backward = sections(f.source(Wx, Wh, b, X))["cell_0"].split("def backward")
        assert forward.count(" + ") == 1 and "xp.sum" not in backward
        close(got[0], want[0])
        for g, w in zip(got[1], want[1]):
            close(g, w)
    for _ in range(3):                      # imperative: the loop rolled in backward()
        params = [nk.from_ndarray(a.copy()).requires_grad() for a in (Wx, Wh, b)]
        loss = loop_rnn(*params, nk.from_ndarray(X))
        loss.backward()
        close(loss.data, want[0])
        for p, w in zip(params, want[1]):
            close(p.grad, w)


@pytest.mark.parametrize("case", ["broadcast", "shared", "mixed dtypes", "subtracted"])
def test_sums_regrouped_or_left_give_the_loop_s_values(unmoved, case):
    Wx, Wh, b, X, h0 = data(T=9, B=3, D=4, H=5, seed=8)
    c = RNG.standard_normal((1, 5))

    def cell(h, x):
        a = x @ Wx + h @ Wh
        if case == "broadcast":             # three carry-free terms of three shapes
            return (a + b + x.sum(axis=1, keepdims=True) + c).tanh(), None
        if case == "shared":                # a is read twice: it stays one sum
            return (a + b).tanh() + a * 0.1, None
        if case == "mixed dtypes":          # a float32 bias: the float64 sum is not regrouped
            return (a + b.astype(np.float32)).tanh(), None
        return (x @ Wx - h @ Wh + b).tanh(), None   # a difference: left as it is

    def loss(Wx, Wh, b, X):
        return (nk.scan(cell, h0, X)[0] ** 2).sum()

    f = nk.value_and_grad(loss, argnums=(0, 1, 2, 3))
    want = unmoved(f, Wx, Wh, b, X)
    with nk.config(compile="always"):
        got = f(Wx, Wh, b, X)
        forward = sections(f.source(Wx, Wh, b, X))["cell_0"].split("def backward")[0]
    if case == "broadcast":
        assert forward.count(" + ") == 1
    close(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        assert g.shape == w.shape and g.dtype == w.dtype
        close(g, w)
    check_grads(loss, Wx, Wh, b, X[:3], order=2, rtol=1e-5, atol=1e-7)


def test_draws_ops_without_a_batching_rule_and_views_stay_in_the_cell():
    X, A = RNG.standard_normal((6, 3)), RNG.standard_normal((3, 3)) + 3 * np.eye(3)

    def f(a, xs):
        def cell(h, x):
            kept = x.dropout(0.5)                             # a draw per step: stays
            solved = nk.numpy.linalg.solve(a, x)              # no batching rule: stays
            return h * 0.5 + kept + solved + x[0], None       # x[0]: a view, stays
        return nk.scan(cell, np.zeros(3), xs)[0].sum()

    g = nk.value_and_grad(f, argnums=(0, 1))
    with nk.config(compile="always"):
        nk.manual_seed(3)
        g(A, X)
        cell = sections(g.source(A, X))["cell_0"].split("def backward")[0]
    assert "dropout" in cell and "solve" in cell and "[0" in cell

    # the loop with nothing moved draws the same numbers
    def both():
        nk.manual_seed(3)
        return g(A, X)
    nk.transform.cache_clear()
    got = both()
    loops.HOIST = False
    try:
        nk.transform.cache_clear()
        want = both()
    finally:
        loops.HOIST = True
        nk.transform.cache_clear()
    close(got[0], want[0])
    close(got[1][1], want[1][1])


def test_work_on_constants_alone_runs_once(unmoved):
    W = RNG.standard_normal((4, 4)) * 0.3

    def f(w, h0):
        def cell(h, _):
            return (h @ (w.T * 2.0).tanh()).sin(), None          # w.T * 2.0 and its tanh: once
        return nk.scan(cell, h0, None, length=9)[0].sum()

    h0 = RNG.standard_normal((2, 4))
    g = nk.value_and_grad(f, argnums=(0, 1))
    with nk.config(compile="always"):
        got = g(W, h0)
        cell = sections(g.source(W, h0))["cell_0"].split("def backward")[0]
    assert "tanh" not in cell and "2.0" not in cell
    want = unmoved(g, W, h0)
    close(got[0], want[0])
    for a, c in zip(got[1], want[1]):
        close(a, c)


def test_vmap_and_no_grad_of_a_loop_with_work_moved_out(unmoved):
    Wx, Wh, b, X, h0 = data(T=5, B=2, D=3, H=4, seed=4)
    batch = np.stack([X, X * 0.5, -X])

    def loss(x):
        return scan_rnn(Wx, Wh, b, x, h0)

    per_example = nk.jit(nk.vmap(nk.grad(loss)))(batch)
    for k in range(3):
        close(per_example[k], unmoved(nk.grad(loss), batch[k]))
    with nk.no_grad():
        value = scan_rnn(*(nk.from_ndarray(a) for a in (Wx, Wh, b, X, h0)))
    close(value.data, unmoved(loss, X))


def lm(Wx, Wh, Wo, X, h0):
    """An RNN with an output layer at every step (a language model's shape)."""
    def cell(h, x):
        h = (x @ Wx + h @ Wh).tanh()
        return h, (h @ Wo).sin() + h.sum(axis=1, keepdims=True)
    hT, ys = nk.scan(cell, h0, X)
    return (ys * ys).sum() + (hT * hT).sum()


def lm_data(T=6, B=3, D=4, H=5, V=7, seed=6):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((D, H)) * 0.5, rng.standard_normal((H, H)) * 0.4,
            rng.standard_normal((H, V)) * 0.5, rng.standard_normal((T, B, D)), rng.standard_normal((B, H)) * 0.1)


def test_the_work_only_ys_need_runs_after_the_loop(unmoved):
    args = lm_data()
    f = nk.value_and_grad(lm, argnums=(0, 1, 2, 3, 4))
    with nk.config(compile="always"):
        got = f(*args)
        parts = sections(f.source(*args))
    forward = parts["cell_0"].split("def backward")[0]
    assert products(forward) == 1 and "sin" not in forward and "xp.sum" not in forward
    assert "xp.sin" in parts["outer"]
    want = unmoved(f, *args)
    close(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        close(g, w)


def test_moved_after_the_loop_finite_differences_to_second_order():
    Wx, Wh, Wo, X, h0 = lm_data(T=3, B=2, D=2, H=3, V=2, seed=7)
    check_grads(lambda wh, wo, x: lm(Wx, wh, wo, x, h0), Wh, Wo, X, order=2, rtol=1e-5, atol=1e-7)


def test_a_rolled_loop_s_stacked_outputs_are_computed_after_it(unmoved):
    Wx, Wh, Wo, X, h0 = lm_data(T=30, seed=8)

    def f(Wx, Wh, Wo, X):
        h, outs = h0, []
        for t in range(X.shape[0]):
            h = (X[t] @ Wx + h @ Wh).tanh()
            outs.append((h @ Wo).tanh())
        return (nk.numpy.stack(outs) ** 2).sum()

    g = nk.value_and_grad(f, argnums=(0, 1, 2, 3))
    with nk.config(compile="always"):
        got = g(Wx, Wh, Wo, X)
        parts = sections(g.source(Wx, Wh, Wo, X))
    assert products(parts["cell_0"].split("def backward")[0]) == 1
    want = unmoved(g, Wx, Wh, Wo, X)
    close(got[0], want[0])
    for a, c in zip(got[1], want[1]):
        close(a, c)


def test_what_a_carry_needs_or_a_draw_stays_and_the_carry_entering_a_step_is_read(unmoved):
    Wx, Wh, Wo, X, h0 = lm_data(seed=9)

    def f(Wh, Wo, X):
        def cell(h, x):
            new = (x @ Wx + h @ Wh).tanh()
            shared = new @ Wo                          # read by the carry too: stays
            return new + shared.sum() * 1e-3, (shared.cos(), (h @ Wo).exp(), (new @ Wo).dropout(0.3))
        hT, (a, b, c) = nk.scan(cell, h0, X)
        return (a * a).sum() + b.sum() + (c * c).sum() + (hT * hT).sum()

    g = nk.value_and_grad(f, argnums=(0, 1, 2))

    def run():
        nk.manual_seed(11)
        return g(Wh, Wo, X)

    with nk.config(compile="always"):
        got = run()
        nk.manual_seed(11)
        forward = sections(g.source(Wh, Wo, X))["cell_0"].split("def backward")[0]
    assert "xp.exp" not in forward           # (h @ Wo).exp() after the loop, h the carry entering the step
    assert "xp.cos" not in forward           # shared.cos(): shared stays, its cosine moves
    assert "dropout" in forward
    want = unmoved(run)
    close(got[0], want[0])
    for a, c in zip(got[1], want[1]):
        close(a, c)


def summed_loss(Wx, Wh, Wo, X, Y, scan=True):
    """An RNN whose loss is summed over the steps in its carry (or in a Python loop)."""
    F = nk.nn.functional
    B, H = X.shape[1], Wh.shape[0]
    if not scan:
        h, total = np.zeros((B, H)), 0.0
        for t in range(X.shape[0]):
            h = (X[t] @ Wx + h @ Wh).tanh()
            total = total + F.cross_entropy(h @ Wo, Y[t])
        return total

    def cell(carry, step):
        h, total = carry
        x, y = step
        h = (x @ Wx + h @ Wh).tanh()
        return (h, total + F.cross_entropy(h @ Wo, y)), None
    (_, total), _ = nk.scan(cell, (np.zeros((B, H)), np.array(0.0)), (X, Y))
    return total


@pytest.mark.parametrize("scan", [True, False])
def test_a_loss_summed_in_the_carry_is_computed_after_the_loop(unmoved, scan):
    Wx, Wh, Wo, X, _ = lm_data(T=30, seed=10)
    Y = np.random.default_rng(10).integers(0, Wo.shape[1], X.shape[:2])
    g = nk.value_and_grad(lambda *a: summed_loss(*a, scan=scan), argnums=(0, 1, 2))
    with nk.config(compile="always"):
        got = g(Wx, Wh, Wo, X, Y)
        parts = sections(g.source(Wx, Wh, Wo, X, Y))
    forward = parts["cell_0"].split("def backward")[0]
    assert "log_softmax" not in forward and products(forward) == 1
    assert "log_softmax" in parts["outer"]
    want = unmoved(g, Wx, Wh, Wo, X, Y)
    close(got[0], want[0])
    for a, c in zip(got[1], want[1]):
        close(a, c)


def test_a_summed_loss_finite_differences_to_second_order():
    Wx, Wh, Wo, X, _ = lm_data(T=3, B=2, D=2, H=3, V=3, seed=12)
    Y = np.array([[0, 2], [1, 1], [2, 0]])
    def f(wh, wo):
        out = summed_loss(Wx, wh, wo, X, Y)
        # (on variables that need no gradient a scan gives NumPy arrays)
        return out if hasattr(out, "_node") else nk.from_ndarray(np.asarray(out))

    check_grads(f, Wh, Wo, order=2, rtol=1e-5, atol=1e-7)


def gathered_loss(Wx, Wh, Wo, X, Y, kind):
    """An RNN LM over a Python loop whose per-step loss, moved after the loop, needs a constant
    its batching rule makes: the count of kept targets (cross_entropy's mean), the positions of
    the batch (a gather with an index array per step)."""
    F = nk.nn.functional
    rows = np.arange(X.shape[1])
    h = (X[0] @ Wx).tanh()
    total = 0.0
    for t in range(1, X.shape[0]):
        h = (X[t] @ Wx + h @ Wh).tanh()
        logits = h @ Wo
        total = total + (F.cross_entropy(logits, Y[t]) if kind == "cross_entropy"
                         else logits.log_softmax(1)[rows, Y[t]].sum())
    return total


@pytest.mark.parametrize("kind", ["cross_entropy", "gather"])
def test_constants_made_for_moved_work_reach_the_program(unmoved, kind):
    # the functional path takes the new constant leaves as leaves of the rolled graph; the
    # imperative one gives their values after the graph's own leaves (run._Baked)
    Wx, Wh, Wo, X, _ = lm_data(T=40, seed=13)
    Y = np.random.default_rng(13).integers(0, Wo.shape[1], X.shape[:2])
    g = nk.value_and_grad(lambda *a: gathered_loss(*a, kind), argnums=(0, 1, 2))
    want = unmoved(g, Wx, Wh, Wo, X, Y)
    with nk.config(compile="always"):
        for _ in range(2):
            got = g(Wx, Wh, Wo, X, Y)
            close(got[0], want[0])
            for a, c in zip(got[1], want[1]):
                close(a, c)
        parts = sections(g.source(Wx, Wh, Wo, X, Y))
    softmax = re.compile(r"log_softmax|xp\.exp")
    assert softmax.search(parts["outer"]) and not softmax.search(parts["cell_0"])
    for _ in range(3):                      # imperative: interpreted, then compiled
        params = [nk.from_ndarray(a.copy()).requires_grad() for a in (Wx, Wh, Wo)]
        loss = gathered_loss(*params, nk.from_ndarray(X), nk.from_ndarray(Y), kind)
        loss.backward()
        close(loss.data, want[0])
        for p, c in zip(params, want[1]):
            close(p.grad, c)
    parts = sections(loss.source())
    assert softmax.search(parts["outer"]) and not softmax.search(parts["cell_0"])


@pytest.mark.parametrize("retain", [False, True])
def test_a_loop_rolled_by_code_generation_moves_nothing_that_makes_a_constant(unmoved, retain):
    # a retained gradient sends the imperative graph to code generation, which rolls it with the
    # graph's own leaves only: the per-step loss, whose batching makes a constant, stays
    F = nk.nn.functional
    rng = np.random.default_rng(14)
    Wh, Wo, h0, Y = rng.standard_normal((5, 5)) * 0.4, rng.standard_normal((5, 7)) * 0.5, \
        rng.standard_normal((3, 5)), rng.integers(0, 7, 3)

    def run():
        params = [nk.from_ndarray(a.copy()).requires_grad() for a in (Wh, Wo)]
        h, total, targets = nk.from_ndarray(h0), 0.0, nk.from_ndarray(Y)
        for _ in range(40):
            h = (h @ params[0]).tanh()
            total = total + F.cross_entropy(h @ params[1], targets)
        if retain:
            total.retain_grad()
        total.backward()
        return total, [np.array(total.data)] + [p.grad for p in params]

    want = unmoved(run)[1]
    for _ in range(3):
        total, got = run()
        for a, c in zip(got, want):
            close(a, c)
    parts = sections(total.source())
    assert ("log_softmax" in parts["cell_0"].split("def backward")[0]) == retain
