"""neuronika.checkpoint: rematerialisation (issue 15, transformations, part 3).

A checkpointed function gives the values and gradients of the function itself (the same
kernels in the same order: equal to the last bit) on both faces, inside jit, through
trees of arguments and results and closures over a module's parameters; second
derivatives match the plain function and finite differences; and the backward does not
find the function's intermediates kept: they are recomputed (tracemalloc peaks, the
generated code).
"""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import neuronika as nk
from neuronika import nn
from neuronika import numpy as nnp
from neuronika.nn import functional as F
from neuronika.transform import buffers
from neuronika.testing import check_grads, oracle

MODES = ["never", "always", "auto"]


def data(width=4, hidden=6, batch=(5,), blocks=3, seed=0):
    rng = np.random.default_rng(seed)
    params = [(rng.standard_normal((width, hidden)) * 0.5, rng.standard_normal(hidden) * 0.1,
               rng.standard_normal((hidden, width)) * 0.5) for _ in range(blocks)]
    return params, rng.standard_normal(batch + (width,))


def block(h, w1, b1, w2):
    return h + nnp.tanh(nnp.tanh(h @ w1 + b1) @ w2)


def mlp(params, x, checkpointed):
    step = nk.checkpoint(block) if checkpointed else block
    h = x
    for w1, b1, w2 in params:
        h = step(h, w1, b1, w2)
    return (h * h).sum()


def same(a, b):
    """Equal to the last bit, through trees."""
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            same(u, v)
        return
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            same(a[k], b[k])
        return
    a = a.data if isinstance(a, nk.Var) else a
    b = b.data if isinstance(b, nk.Var) else b
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---- first order: the values and gradients of the function itself ---------------------------

@pytest.mark.parametrize("batch", [(5,), (1,), (2, 3), ()])
@pytest.mark.parametrize("mode", MODES)
def test_mlp_blocks_match_the_plain_function_bit_for_bit(batch, mode):
    params, x = data(batch=batch)
    with nk.config(compile=mode):
        for _ in range(3):          # traced (interpreted in "auto"), then compiled
            plain = nk.value_and_grad(mlp, argnums=(0, 1))(params, x, False)
            remat = nk.value_and_grad(mlp, argnums=(0, 1))(params, x, True)
            same(plain, remat)


@pytest.mark.parametrize("mode", MODES)
def test_imperative_backward_matches_bit_for_bit(mode):
    params, x = data(batch=(4,), blocks=6)
    grads = []
    with nk.config(compile=mode):
        for checkpointed in (False, True, True):
            leaves = [[nk.from_ndarray(a.copy()).requires_grad() for a in p] for p in params]
            xv = nk.from_ndarray(x.copy()).requires_grad()
            loss = mlp(leaves, xv, checkpointed)
            loss.backward()
            grads.append((loss.data, xv.grad, [[a.grad for a in p] for p in leaves]))
    same(grads[0], grads[1])
    same(grads[0], grads[2])


def test_long_imperative_chain_rolled_into_a_loop_matches():
    params, x = data(batch=(3,), blocks=24, seed=1)
    results = []
    for checkpointed in (False, True):
        leaves = [[nk.from_ndarray(a.copy()).requires_grad() for a in p] for p in params]
        for _ in range(3):          # the repeated blocks are rolled into a scan once compiled
            for p in leaves:
                for a in p:
                    a.zero_grad()
            loss = mlp(leaves, x, checkpointed)
            loss.backward()
        results.append((loss.data, [[a.grad for a in p] for p in leaves]))
    same(results[0], results[1])


def test_closure_over_a_modules_parameters():
    nk.manual_seed(0)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(4, 8, dtype=np.float64), nn.Tanh(),
                                          nn.Linear(8, 4, dtype=np.float64)) for _ in range(3)])
    x = np.random.default_rng(2).standard_normal((5, 4))
    grads = []
    for checkpointed in (False, True):
        model.zero_grad()
        h = x
        for layer in model:
            h = nk.checkpoint(layer)(h) if checkpointed else layer(h)
        loss = (h.tanh() ** 2).mean()
        loss.backward()
        grads.append((loss.data, {name: p.grad.copy() for name, p in model.named_parameters()}))
    same(grads[0], grads[1])
    assert len(grads[0][1]) == 12


def test_against_pytorch_and_its_checkpoint():
    torch = oracle("torch")
    from torch.utils.checkpoint import checkpoint as torch_checkpoint
    torch.manual_seed(0)
    layers = [torch.nn.Linear(4, 8, dtype=torch.float64) for _ in range(3)]
    x = np.random.default_rng(3).standard_normal((5, 4))
    xt = torch.tensor(x, requires_grad=True)
    h = xt
    for layer in layers:
        h = torch_checkpoint(lambda v, lay=layer: torch.tanh(lay(v)) @ lay.weight, h, use_reentrant=False)
    loss_t = (h ** 2).sum()
    loss_t.backward()

    mine = [nn.Linear(4, 8, dtype=np.float64) for _ in range(3)]
    for lay, theirs in zip(mine, layers):
        lay.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    xv = nk.from_ndarray(x.copy()).requires_grad()
    h = xv
    for lay in mine:
        h = nk.checkpoint(lambda v, lay=lay: F.linear(v, lay.weight, lay.bias).tanh() @ lay.weight)(h)
    loss = (h ** 2).sum()
    loss.backward()
    np.testing.assert_allclose(loss.data, loss_t.item(), rtol=1e-13)
    np.testing.assert_allclose(xv.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-13)
    for lay, theirs in zip(mine, layers):
        np.testing.assert_allclose(lay.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(lay.bias.grad, theirs.bias.grad.numpy(), rtol=1e-12, atol=1e-13)


# ---- trees, statics, several results ---------------------------------------------------------

def tree_fn(inputs, scale, *, shift):
    a, b = inputs["a"], inputs["pair"][1]
    s = nnp.sin(a * b) * scale + shift
    return {"s": s, "both": (s.sum(axis=-1), nnp.exp(b) * inputs["pair"][0])}


def tree_loss(a, b, c, checkpointed):
    f = nk.checkpoint(tree_fn) if checkpointed else tree_fn
    out = f({"a": a, "pair": [c, b]}, 0.5, shift=1.0)
    return (out["s"] ** 2).sum() + out["both"][0].sum() + (out["both"][1] * a).sum()


def test_trees_of_arguments_and_results_static_numbers_and_keywords():
    rng = np.random.default_rng(4)
    a, b, c = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((3, 1))
    for _ in range(2):
        plain = nk.value_and_grad(tree_loss, argnums=(0, 1, 2))(a, b, c, False)
        remat = nk.value_and_grad(tree_loss, argnums=(0, 1, 2))(a, b, c, True)
        same(plain, remat)
    check_grads(lambda a, b, c: tree_loss(a, b, c, True), a, b, c, order=2)


def test_results_without_gradient_and_unused_results():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4))

    def f(v):
        return v.tanh(), nnp.argmax(v, axis=1), (v * 3).exp()   # the third is never used

    def loss(v, checkpointed):
        g = nk.checkpoint(f) if checkpointed else f
        t, i, _ = g(v)
        return (t * t).sum() + (i * 0.0).sum()

    same(nk.value_and_grad(loss)(x, False), nk.value_and_grad(loss)(x, True))
    check_grads(lambda v: loss(v, True), x, order=2)


def test_nested_checkpoints_and_identity_results():
    params, x = data(batch=(2,), blocks=2)

    def outer(h, p, q):
        inner = nk.checkpoint(block)
        return inner(inner(h, *p), *q), h        # h returned as it is

    def loss(params, x, checkpointed):
        f = nk.checkpoint(outer) if checkpointed else outer
        y, same_x = f(x, *params)
        return (y ** 2).sum() + (same_x ** 3).sum()

    # the gradient of x adds the same terms in another order: equal to rounding
    plain = nk.value_and_grad(loss, argnums=(0, 1))(params, x, False)
    remat = nk.value_and_grad(loss, argnums=(0, 1))(params, x, True)
    for a, b in zip(nk_tree(plain), nk_tree(remat)):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13)
    hess = nk.hessian(lambda v: loss(params, v, True))(x)
    np.testing.assert_allclose(hess, nk.hessian(lambda v: loss(params, v, False))(x), rtol=1e-12, atol=1e-13)


# ---- jit -------------------------------------------------------------------------------------

def test_inside_jit():
    params, x = data(batch=(4,), blocks=4)
    results = []
    for checkpointed in (False, True):
        step = nk.jit(lambda p, v, c=checkpointed: nk.value_and_grad(mlp, argnums=(0, 1))(p, v, c))
        for _ in range(3):
            results.append(step(params, x))
    for r in results[1:]:
        same(results[0], r)
    text = step.source(params, x)
    assert ".program(1).forward(" in text and "[0]" in text     # the cell's residuals dropped


def test_jit_that_differentiates_nothing_runs_the_function():
    params, x = data(batch=(4,), blocks=2)
    plain = nk.jit(lambda p, v: mlp(p, v, False))(params, x)
    remat = nk.jit(lambda p, v: mlp(p, v, True))
    for _ in range(3):
        same(plain, remat(params, x))
    assert ".program(1)" not in remat.source(params, x)          # nothing to recompute


# ---- second order --------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [(3,), (2, 2)])
def test_second_order_against_finite_differences(batch):
    params, x = data(batch=batch, blocks=2, width=3, hidden=4)
    (w1, b1, w2), second = params

    def f(w1, b1, w2, x):
        return mlp([(w1, b1, w2), second], x, True)
    check_grads(f, w1, b1, w2, x, order=2)


def test_grad_of_grad_hvp_and_hessian_match_the_plain_function():
    params, x = data(batch=(3,), blocks=3)
    rng = np.random.default_rng(6)
    v = rng.standard_normal(x.shape)

    def gnorm(p, x, c):
        g = nk.grad(mlp, argnums=1)(p, x, c)
        return (g * g).sum()
    for fn, args in ((nk.grad(gnorm, argnums=(0, 1)), (params, x)),
                     (lambda p, x, c: nk.hvp(lambda u: mlp(p, u, c), x, v), (params, x)),
                     (nk.hessian(mlp, argnums=1), (params, x))):
        plain, remat = fn(*args, False), fn(*args, True)
        for a, b in zip(nk_tree(plain), nk_tree(remat)):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def nk_tree(obj):
    if isinstance(obj, (tuple, list)):
        return [leaf for o in obj for leaf in nk_tree(o)]
    return [np.asarray(obj)]


# ---- random draws are replayed -------------------------------------------------------------

def test_dropout_draws_the_same_mask_when_recomputed():
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((6, 5)), rng.standard_normal((5, 5))

    def f(h, w):
        return F.dropout(h @ w, 0.5).tanh() * 2.0

    def loss(w, checkpointed):
        g = nk.checkpoint(f) if checkpointed else f
        if checkpointed == "nested":        # the draws inside an inner checkpoint
            g = nk.checkpoint(lambda h, w: nk.checkpoint(f)(h, w) + 0.0)
        return (g(g(x, w), w) ** 2).sum()

    results = []
    for checkpointed in (False, True, "nested"):
        nk.manual_seed(11)
        wv = nk.from_ndarray(w.copy()).requires_grad()
        out = loss(wv, checkpointed)
        out.backward()
        results.append((out.data, wv.grad, nk.rand(3).data))     # the stream continues alike
    same(results[0], results[1])
    same(results[0], results[2])


# ---- memory: the intermediates are not kept --------------------------------------------------

def _peak(step):
    step()
    step()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _wide(blocks, width=4, hidden=512, batch=128):
    # each block keeps a (batch, hidden) tanh output for its backward: 0.5 MiB in float64
    rng = np.random.default_rng(8)
    params = [(rng.standard_normal((width, hidden)) * 0.3, rng.standard_normal(hidden) * 0.1,
               rng.standard_normal((hidden, width)) * 0.05) for _ in range(blocks)]
    return params, rng.standard_normal((batch, width)), batch * hidden * 8


def _growth(peak_of, monkeypatch):
    """How much the peak grows from 8 blocks to 16, in blocks' intermediates, without and
    with checkpoints. Without, the backward starts with every block's intermediates; with,
    it holds one block's at a time (besides the gradients and each block's small input).
    Programs compiled here keep no buffers between calls (``transform.buffers``): a kept
    buffer is allocated by the first call, where tracemalloc does not look."""
    monkeypatch.setattr(buffers, "KEEP", False)
    nk.transform.cache_clear()
    growth = {}
    for checkpointed in (False, True):
        peaks = []
        for blocks in (8, 16):
            params, x, per_block = _wide(blocks)
            peaks.append(peak_of(params, x, checkpointed))
        growth[checkpointed] = (peaks[1] - peaks[0]) / (8 * per_block)
    nk.transform.cache_clear()
    return growth


def test_the_backward_recomputes_instead_of_keeping_functional(monkeypatch):
    def peak_of(params, x, checkpointed):
        fn = nk.value_and_grad(mlp, argnums=0)
        return _peak(lambda: fn(params, x, checkpointed))
    growth = _growth(peak_of, monkeypatch)
    assert growth[False] > 0.9 and growth[True] < 0.2, growth


def test_the_backward_recomputes_instead_of_keeping_imperative(monkeypatch):
    def peak_of(params, x, checkpointed):
        leaves = [[nk.from_ndarray(a).requires_grad() for a in p] for p in params]

        def step():
            loss = mlp(leaves, x, checkpointed)
            loss.backward()
            for p in leaves:
                for a in p:
                    a.zero_grad()
        return _peak(step)
    growth = _growth(peak_of, monkeypatch)
    assert growth[False] > 0.9 and growth[True] < 0.2, growth


def test_the_generated_code_drops_the_residuals_and_recomputes():
    params, x = data(batch=(4,), blocks=2)
    text = nk.grad(mlp, argnums=0).source(params, x, True)
    forward_calls = [line for line in text.splitlines() if ".program(1).forward(" in line]
    assert forward_calls and all(line.rstrip().endswith("[0]") for line in forward_calls)
    recomputed = [line for line in text.splitlines() if ".backward(" in line and ".forward(" in line]
    assert len(recomputed) == 2


# ---- outside differentiation, and what is refused -------------------------------------------

def test_outside_differentiation_it_runs_the_function():
    params, x = data(batch=(2,), blocks=1)
    w1, b1, w2 = params[0]
    plain = block(x, w1, b1, w2)
    got = nk.checkpoint(block)(x, w1, b1, w2)
    assert isinstance(got, np.ndarray)
    same(plain, got)
    with nk.no_grad():
        v = nk.from_ndarray(w1).requires_grad()
        out = nk.checkpoint(block)(x, v, b1, w2)
        same(block(x, v, b1, w2), out)


def test_branching_on_a_value_is_refused_naming_checkpoint():
    x = nk.from_ndarray(np.ones(3)).requires_grad()

    def f(v):
        return v * 2 if float(v.sum()) > 0 else v

    with pytest.raises(nk.GradientError, match="checkpoint: the function read a value"):
        nk.checkpoint(f)(x)
    with pytest.raises(TypeError, match="checkpoint: expected a function"):
        nk.checkpoint(3)


def test_a_decorator_keeps_the_name_and_docstring():
    @nk.checkpoint
    def layer(h):
        """A layer."""
        return h.tanh()
    assert layer.__name__ == "layer" and layer.__doc__ == "A layer."
    x = nk.from_ndarray(np.linspace(-1, 1, 4)).requires_grad()
    layer(x).sum().backward()
    np.testing.assert_allclose(x.grad, 1 - np.tanh(np.linspace(-1, 1, 4)) ** 2, rtol=1e-15)


def test_a_loop_of_checkpoints_over_tied_weights():
    """Rolling a Python loop of checkpoints (or scans) over the same weights once made a loop
    whose carry was the tuple of their inputs (a crash at its .shape)."""
    params, x = data(batch=(3,), blocks=1, seed=1)

    def tied(p, x, checkpointed):
        return mlp([p] * 24, x, checkpointed)
    with nk.config(compile="always"):
        plain = nk.value_and_grad(tied, argnums=(0, 1))(params[0], x, False)
        remat = nk.value_and_grad(tied, argnums=(0, 1))(params[0], x, True)
    # the two graphs roll at different phases of their runs (the checkpoints' blocks start
    # elsewhere), so the tied weights' 24 gradient terms are added in another grouping: the
    # same to the last bit or two, not bit for bit
    np.testing.assert_allclose(plain[0], remat[0], rtol=1e-14)
    for a, b in zip(plain[1], remat[1]):
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-13)


def test_the_benchmark_runs_and_prints_its_table(capsys):
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import checkpoint as bench
    assert bench.main(["--blocks", "4", "--width", "4", "--batch", "8", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("4 blocks, width 4, hidden 16, batch 8")
    assert [line.split()[:2] for line in lines[2:]] == [
        ["value_and_grad", "no"], ["value_and_grad", "yes"], ["imperative", "no"], ["imperative", "yes"]]


def test_arrays_of_another_library():
    xps = pytest.importorskip("array_api_strict")
    params, x = data(batch=(3,), blocks=2)
    theirs = [tuple(xps.asarray(a) for a in p) for p in params]
    value, grad = nk.value_and_grad(mlp, argnums=1)(theirs, xps.asarray(x), True)
    want_value, want_grad = nk.value_and_grad(mlp, argnums=1)(params, x, True)
    assert type(grad).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(float(value), want_value, rtol=1e-13)
