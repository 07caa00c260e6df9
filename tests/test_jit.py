"""neuronika.jit: a whole training step (forward, backward, optimizer update) as one program.

The jitted step is checked against the same step done in pieces (value_and_grad, then the
functional optimizer's update run eagerly on NumPy arrays), in float64 over 20 steps.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp
from neuronika import optim, transform


@pytest.fixture(autouse=True)
def fresh():
    transform.cache_clear()
    yield
    transform.cache_clear()


def params_tree(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((5, 4)).astype(dtype),
            "b": [rng.standard_normal(4).astype(dtype), (rng.standard_normal(()).astype(dtype),)]}


def data(seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal((7, 4)).astype(dtype)


def loss_fn(p, x, y):
    return ((nnp.tanh(x @ p["w"] + p["b"][0]) * p["b"][1][0] - y) ** 2).mean()


def leaves(tree):
    return [tree["w"], tree["b"][0], tree["b"][1][0]]


OPTIMIZERS = {
    "sgd": lambda: optim.sgd(0.1),
    "sgd-momentum": lambda: optim.sgd(0.1, momentum=0.9),
    "sgd-nesterov-wd": lambda: optim.sgd(0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
    "adam": lambda: optim.adam(1e-2),
    "adam-wd": lambda: optim.adam(1e-2, betas=(0.8, 0.99), weight_decay=0.1),
    "adamw": lambda: optim.adamw(1e-2, weight_decay=0.05),
}


def make_step(opt):
    @neuronika.jit
    def step(params, state, x, y):
        loss, grads = neuronika.value_and_grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state, loss
    return step


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_whole_step_matches_the_pieces(name):
    opt = OPTIMIZERS[name]()
    step = make_step(opt)
    x, y = data()
    p_jit = p_eager = params_tree()
    s_jit = s_eager = opt.init(p_jit)
    for _ in range(20):
        p_jit, s_jit, loss_jit = step(p_jit, s_jit, x, y)
        loss, grads = neuronika.value_and_grad(loss_fn)(p_eager, x, y)
        updates, s_eager = opt.update(grads, s_eager, p_eager)
        p_eager = optim.apply_updates(p_eager, updates)
        np.testing.assert_allclose(loss_jit, loss, rtol=1e-13, atol=0)
    for a, b in zip(leaves(p_jit), leaves(p_eager)):
        assert a.dtype == np.float64 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert int(s_jit["count"]) == 20
    assert isinstance(p_jit["b"], list) and isinstance(p_jit["b"][1], tuple)
    assert step.stats.traced == 1
    assert loss_jit < loss_fn(params_tree(), x, y)          # it trained


def test_compile_modes_give_the_same_numbers():
    opt = optim.adam(1e-2)
    x, y = data()
    results = []
    for mode in ("never", "always", "auto"):
        transform.cache_clear()
        with neuronika.config(compile=mode):
            step = make_step(opt)
            p, s = params_tree(), opt.init(params_tree())
            for _ in range(3):
                p, s, loss = step(p, s, x, y)
        results.append(leaves(p) + [loss])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_float32_stays_float32():
    opt = optim.adam(1e-2)
    step = make_step(opt)
    x, y = data(dtype=np.float32)
    p, s = params_tree(dtype=np.float32), opt.init(params_tree(dtype=np.float32))
    for _ in range(3):
        p, s, loss = step(p, s, x, y)
    assert all(a.dtype == np.float32 for a in leaves(p) + leaves(s["mu"]) + leaves(s["nu"]))
    assert loss.dtype == np.float32


def test_learning_rate_as_a_value_does_not_retrace():
    @neuronika.jit
    def step(params, state, x, y, lr):
        opt = optim.sgd(lr, momentum=0.9)
        loss, grads = neuronika.value_and_grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state, loss

    x, y = data()
    p_jit = p_eager = params_tree()
    s_jit = s_eager = optim.sgd(0.1, momentum=0.9).init(p_jit)
    for k in range(6):
        lr = 0.1 / (1 + k)
        p_jit, s_jit, _ = step(p_jit, s_jit, x, y, lr)
        _, grads = neuronika.value_and_grad(loss_fn)(p_eager, x, y)
        updates, s_eager = optim.sgd(lr, momentum=0.9).update(grads, s_eager, p_eager)
        p_eager = optim.apply_updates(p_eager, updates)
    for a, b in zip(leaves(p_jit), leaves(p_eager)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert step.stats.traced == 1


def test_a_schedule_and_the_step_count_do_not_retrace():
    opt = optim.adam(lambda count: 0.1 * 0.5 ** count)       # a function of the step count
    step = make_step(opt)
    x, y = data()
    p_jit = p_eager = params_tree()
    s_jit = s_eager = opt.init(p_jit)
    for _ in range(8):
        p_jit, s_jit, _ = step(p_jit, s_jit, x, y)
        _, grads = neuronika.value_and_grad(loss_fn)(p_eager, x, y)
        updates, s_eager = opt.update(grads, s_eager, p_eager)
        p_eager = optim.apply_updates(p_eager, updates)
    for a, b in zip(leaves(p_jit), leaves(p_eager)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert step.stats.traced == 1 and int(s_jit["count"]) == 8


def test_retrace_count_on_a_new_shape():
    step = make_step(optim.sgd(0.1))
    p, s = params_tree(), optim.sgd(0.1).init(params_tree())
    x, y = data()
    step(p, s, x, y)
    step(p, s, x, y)
    assert step.stats.traced == 1
    step(p, s, x[:3], y[:3])
    assert step.stats.traced == 2
    assert "shape" in str(step.stats.last_miss)


def test_static_arguments():
    @neuronika.jit
    def scaled(x, n, mode):
        for _ in range(n):
            x = x * 2
        return x + 1 if mode == "plus" else x - 1

    f = neuronika.jit(scaled.__wrapped__, static_argnums=1, static_argnames="mode")
    x = np.arange(3.0)
    np.testing.assert_array_equal(f(x, 2, mode="plus"), x * 4 + 1)
    np.testing.assert_array_equal(f(x, 2, mode="plus"), x * 4 + 1)
    np.testing.assert_array_equal(f(x, 3, mode="minus"), x * 8 - 1)
    assert f.stats.traced == 2
    with pytest.raises(TypeError, match="static_argnums"):
        f(x, [1], mode="plus")


def test_source_shows_one_program():
    step = make_step(optim.adam(1e-2))
    p, x, y = params_tree(), *data()
    s = optim.adam(1e-2).init(p)
    text = step.source(p, s, x, y)
    # one program; the value_and_grad inside runs its own compiled forward and backward as one
    # step of it, shown below it
    assert text.count("def forward(") == 1 and text.count("def program(") == 1
    main, called = text.split("# call_0: <the program of value_and_grad")
    assert "call_0(" in main and "xp.sqrt" in main                   # the update
    assert "xp.tanh" in called and "g0 = " in called                  # forward and backward


def test_outputs_of_any_structure():
    from collections import namedtuple
    Pair = namedtuple("Pair", "a b")

    @neuronika.jit
    def f(x, y):
        return {"x": x, "both": [x * y, Pair(y + 1, 2.5)], "none": None, "const": np.ones(2)}

    x, y = np.arange(2.0), np.full(2, 3.0)
    for _ in range(3):
        out = f(x, y)
        assert out["x"] is not None and np.array_equal(out["x"], x)
        np.testing.assert_array_equal(out["both"][0], x * y)
        assert isinstance(out["both"][1], Pair) and out["both"][1].b == 2.5
        np.testing.assert_array_equal(out["both"][1].a, y + 1)
        assert out["none"] is None
        out["const"][0] = 7.0           # a fresh copy each call: the trace's constant stays
    np.testing.assert_array_equal(f(x, y)["const"], np.ones(2))


def test_errors_are_clear():
    x = np.ones(3)
    with pytest.raises(TypeError, match=r"jit: the result\[1\] is a object"):
        neuronika.jit(lambda x: (x, object()))(x)
    with pytest.raises(neuronika.GradientError, match="scalar"):
        neuronika.jit(lambda x: neuronika.grad(lambda v: v * 2)(x))(x)
    with pytest.raises(TypeError, match="argument 1.*set"):
        neuronika.jit(lambda x, s: x)(x, {1, 2})
    with pytest.raises(neuronika.ArgnumsError, match="int"):
        neuronika.jit(lambda i: neuronika.grad(lambda v: (v * 2.0).sum())(i))(np.arange(3))
    with pytest.raises(neuronika.ArgnumsError, match="argument 0 holds a variable of dtype int64"):
        neuronika.jit(lambda p: neuronika.grad(lambda p: (p["w"] ** 2).sum())(p))({"w": x, "n": 3})
    with pytest.raises(neuronika.ArgnumsError, match="bool"):
        neuronika.jit(lambda p: neuronika.grad(lambda p: (p["w"] ** 2).sum())(p))({"w": x, "on": True})
    with pytest.raises(ValueError, match="structure of the gradients"):
        opt = optim.sgd(0.1)
        opt.update({"w": x}, opt.init({"v": x}), {"v": x})
    with pytest.raises(AttributeError, match="immutable"):
        optim.sgd(0.1).lr = 0.2


def test_guarded_python_control_flow_retraces():
    @neuronika.jit
    def f(x):
        return x * 2 if x.sum() > 0 else -x

    np.testing.assert_array_equal(f(np.ones(2)), [2.0, 2.0])
    np.testing.assert_array_equal(f(-np.ones(2)), [1.0, 1.0])
    np.testing.assert_array_equal(f(np.ones(2)), [2.0, 2.0])
    assert f.stats.traced == 2


def test_inside_another_trace_it_runs_inline():
    inner = neuronika.jit(lambda v: nnp.sin(v) * v)
    g = neuronika.grad(lambda v: inner(v).sum())(np.array([0.5, 1.0]))
    v = np.array([0.5, 1.0])
    np.testing.assert_allclose(g, np.cos(v) * v + np.sin(v), rtol=1e-14)


def test_on_variables_it_runs_inline_after_a_cached_call():
    """A jitted function called on variables outside any trace (after calls on arrays have
    cached its program) builds a graph that backward() differentiates."""
    inner = neuronika.jit(lambda v: nnp.sin(v) * v)
    v = np.array([0.5, 1.0])
    for _ in range(3):
        inner(v)
    x = neuronika.from_ndarray(v.copy()).requires_grad()
    y = inner(x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, np.cos(v) * v + np.sin(v), rtol=1e-14)


def test_the_hot_path_signature_is_the_full_one():
    from neuronika import tracing
    a, b = np.ones((2, 3)), np.zeros(4, np.float32)
    for arg in (a, [a, b], (a, (b, 1.5)), {"w": a, "n": 3, "z": 1j, "l": [b]}, [], {}, 2 ** 62):
        values, plain = [], []
        assert tracing.flatten_plain(arg, plain) == tracing.flatten(arg, values, 0)
        assert len(values) == len(plain) and all(x is y for x, y in zip(values, plain))
    for arg in (neuronika.from_ndarray(a), [a, np.float64(1.0)], True, None, "s", {"k": 2 ** 70}):
        with pytest.raises(tracing.NotPlain):
            tracing.flatten_plain(arg, [])


def test_no_retrace_warning_over_a_training_loop():
    step = make_step(optim.adamw(1e-3))
    p, x, y = params_tree(), *data()
    s = optim.adamw(1e-3).init(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(30):
            p, s, _ = step(p, s, x, y)
    assert step.stats.traced == 1


def test_float32_with_the_learning_rate_as_a_value():
    @neuronika.jit
    def step(params, state, x, y, lr):
        opt = optim.adamw(lr, weight_decay=0.1)
        loss, grads = neuronika.value_and_grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state, loss

    x, y = data(dtype=np.float32)
    p, s = params_tree(dtype=np.float32), optim.adamw(0.1).init(params_tree(dtype=np.float32))
    for k in range(3):
        p, s, loss = step(p, s, x, y, 0.01 * (k + 1))
    assert all(a.dtype == np.float32 for a in leaves(p))
    assert step.stats.traced == 1


def test_leaves_that_are_not_arrays_are_left_alone():
    opt = optim.adam(0.1)

    @neuronika.jit
    def step(params, state):
        grads = neuronika.grad(lambda p: (p["w"] ** 2).sum())(params)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state

    params = {"w": np.ones(3), "name": "layer", "frozen": None}
    state = opt.init(params)
    assert state["mu"]["name"] is None and state["mu"]["frozen"] is None
    for _ in range(3):
        params, state = step(params, state)
    assert params["name"] == "layer" and params["frozen"] is None
    assert (params["w"] < 1).all()


def test_first_call_is_interpreted_and_the_repeat_compiled():
    step = make_step(optim.sgd(0.1))
    p, x, y = params_tree(), *data()
    s = optim.sgd(0.1).init(p)
    values, entries, kw_items, key = step._signature((p, s, x, y), {})
    with neuronika.config(compile="auto", compile_after=2):
        step(p, s, x, y)
        (trace,) = step.cache.get(key)
        assert trace.pending is not None              # interpreted so far
        step(p, s, x, y)
        assert trace.pending is None                  # compiled on the repeat


def test_another_array_library():
    xs = pytest.importorskip("array_api_strict")
    for make in (lambda: optim.sgd(0.1, momentum=0.9), lambda: optim.adam(0.1), lambda: optim.adamw(0.1)):
        opt = make()
        step = make_step(opt)
        got = []
        for lib in (xs, np):
            x, y = (lib.asarray(a) for a in data())
            p = {"w": lib.asarray(params_tree()["w"]),
                 "b": [lib.asarray(params_tree()["b"][0]), (lib.asarray(params_tree()["b"][1][0]),)]}
            s = opt.init(p)
            for _ in range(3):
                p, s, _ = step(p, s, x, y)
            e_p = {"w": lib.asarray(params_tree()["w"]),
                   "b": [lib.asarray(params_tree()["b"][0]), (lib.asarray(params_tree()["b"][1][0]),)]}
            e_s = opt.init(e_p)
            for _ in range(3):
                _, grads = neuronika.value_and_grad(loss_fn)(e_p, x, y)
                updates, e_s = opt.update(grads, e_s, e_p)
                e_p = optim.apply_updates(e_p, updates)
            if lib is xs:                  # stays in its library, jitted and eagerly
                assert all(type(a) is type(x) for a in leaves(p) + leaves(e_p))
            got.append([np.asarray(a) for a in leaves(p) + leaves(e_p)])
        for a, b in zip(*got):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def _rnn_loss(params, xs):
    wx, wh, b = params
    h = (xs[0].mm(wx) + b).tanh()
    for t in range(1, xs.shape[0]):         # unrolled: rolled into a loop when traced
        h = (xs[t].mm(wx) + h.mm(wh) + b).tanh()
    return (h * h).mean()


def _scan_loss(params, xs):
    wx, wh, b = params

    def cell(h, x):
        h = (x.mm(wx) + h.mm(wh) + b).tanh()
        return h, h
    h, ys = neuronika.scan(cell, nnp.zeros((xs.shape[1], wh.shape[0])), xs)
    return (ys * ys).sum() + h.sum()


@pytest.mark.parametrize("loss", [_rnn_loss, _scan_loss])
@pytest.mark.parametrize("steps", [3, 6, 20])
@pytest.mark.parametrize("route", ["own program", "graph"])
def test_gradients_through_a_loop_match_value_and_grad(loss, steps, route):
    """A loop's gradients inside jit hold every constant's accumulated gradient (they were
    once zeros past the last step), on both routes: value_and_grad's own program called as
    one step, and (its loss reads the jit's xs from outside) the symbolic gradient, over
    leaves that need no gradient of their own."""
    rng = np.random.default_rng(steps)
    params = [rng.standard_normal((3, 4)), rng.standard_normal((4, 4)) / 2, rng.standard_normal(4) * 0.1]
    xs = rng.standard_normal((steps, 2, 3))
    value, grads = neuronika.value_and_grad(loss)(params, xs)
    opt = optim.sgd(0.1)

    @neuronika.jit
    def step(params, state, xs):
        if route == "graph":
            v, g = neuronika.value_and_grad(lambda p: loss(p, xs))(params)
        else:
            v, g = neuronika.value_and_grad(loss)(params, xs)
        updates, state = opt.update(g, state, params)
        return optim.apply_updates(params, updates), state, v, g

    assert ("call_0(" in step.source(params, opt.init(params), xs)) == (route == "own program")
    for _ in range(3):                       # interpreted, then compiled
        new, _, v, g = step(params, opt.init(params), xs)
        np.testing.assert_allclose(v, value, rtol=1e-14, atol=0)
        for a, b in zip(g, grads):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        for p, a, b in zip(params, new, grads):
            np.testing.assert_allclose(a, p - 0.1 * b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("route", ["own program", "graph"])
def test_a_loop_inside_runs_once_per_step(route, monkeypatch):
    """value_and_grad inside jit runs its own program: the backward reads what the forward
    loop kept, it does not run the loop again; the symbolic gradient (its loss reads the
    jit's xs from outside) runs a loop three times: the forward, the carries again, the
    vector-Jacobian product. Counted by the loops' calls for a program (one per run of a loop,
    compiled or not)."""
    from neuronika.transform import loops as cells
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((3, 4)), rng.standard_normal((4, 4)) / 2, rng.standard_normal(4) * 0.1]
    xs = rng.standard_normal((12, 2, 3))
    opt = optim.sgd(0.1)

    @neuronika.jit
    def step(params, state, xs):
        if route == "graph":
            v, g = neuronika.value_and_grad(lambda p: _scan_loss(p, xs))(params)
        else:
            v, g = neuronika.value_and_grad(_scan_loss)(params, xs)
        updates, state = opt.update(g, state, params)
        return optim.apply_updates(params, updates), state, v

    state = opt.init(params)
    for _ in range(3):                       # interpreted, then compiled
        params, state, _ = step(params, state, xs)
    loops_run = []
    program = cells.Cell.program
    monkeypatch.setattr(cells.Cell, "program", lambda cell, n: loops_run.append(n) or program(cell, n))
    step(params, state, xs)
    assert loops_run == ([12] if route == "own program" else [12, 12, 12])


def test_grad_inside_jit_on_any_arguments():
    """The cases value_and_grad's own program handles inside jit, and those it leaves to the
    symbolic gradient, give the same numbers as outside jit."""
    rng = np.random.default_rng(3)
    w0, x, w = rng.standard_normal((3, 4)), rng.standard_normal((5, 3)), rng.standard_normal(4)

    @neuronika.jit
    def reads_an_intermediate(w0, x, w):         # h is the jit's: the symbolic route
        h = nnp.tanh(x @ w0)
        return neuronika.value_and_grad(lambda w: ((h @ w) ** 2).sum())(w)

    @neuronika.jit
    def with_aux(p, x):
        def loss(p, x):
            pred = x @ p["w"]
            return (pred ** 2).sum(), {"pred": pred, "n": 3}
        return neuronika.value_and_grad(loss, has_aux=True)(p, x)

    @neuronika.jit
    def branches(w):
        return neuronika.grad(lambda w: (w ** 2).sum() if float(w.sum()) > 0 else (w ** 3).sum())(w)

    for k in range(3):
        h = np.tanh(x @ (w0 + k))
        v, g = reads_an_intermediate(w0 + k, x, w)
        np.testing.assert_allclose(v, ((h @ w) ** 2).sum(), rtol=1e-13)
        np.testing.assert_allclose(g, 2 * h.T @ (h @ w), rtol=1e-13)
        p = {"w": w[:3] * (k + 1), "unused": np.ones(2)}
        (v, aux), g = with_aux(p, x)
        np.testing.assert_allclose(v, ((x @ p["w"]) ** 2).sum(), rtol=1e-13)
        np.testing.assert_allclose(aux["pred"], x @ p["w"], rtol=1e-13)
        assert aux["n"] == 3
        np.testing.assert_allclose(g["w"], 2 * x.T @ (x @ p["w"]), rtol=1e-13)
        np.testing.assert_array_equal(g["unused"], np.zeros(2))
        sign = 1.0 if k % 2 == 0 else -1.0
        np.testing.assert_array_equal(branches(np.full(3, sign)), [2.0] * 3 if sign > 0 else [3.0] * 3)
    assert "call_0(" in with_aux.source(p, x) and "call_0(" not in reads_an_intermediate.source(w0, x, w)


SCALE = np.ones(3)


def _scaled_loss(w):
    return (w * SCALE).sum()


def test_grad_inside_jit_sees_a_rebound_global():
    global SCALE
    step = neuronika.jit(lambda w: neuronika.grad(_scaled_loss)(w))
    for _ in range(3):
        np.testing.assert_array_equal(step(np.zeros(3)), np.ones(3))
    SCALE = np.full(3, 2.0)
    try:
        np.testing.assert_array_equal(step(np.zeros(3)), np.full(3, 2.0))
    finally:
        SCALE = np.ones(3)


def test_a_module_or_a_differentiable_leaf_read_from_outside():
    """A jitted function that reads a leaf needing a gradient (a module's parameters) from
    outside computes with it as a constant; it once got the arguments shifted by a seed."""
    w = neuronika.from_ndarray(np.arange(4.0).reshape(2, 2)).requires_grad()
    layer = neuronika.nn.Linear(3, 2, dtype=np.float64)
    x = np.array([[1.0, -2.0]])
    matmul = neuronika.jit(lambda x: x @ w)
    forward = neuronika.jit(lambda x: layer(x))
    z = np.ones((4, 3))
    expected = z @ layer.weight.data.T + layer.bias.data
    for _ in range(3):                       # interpreted, then compiled
        np.testing.assert_array_equal(matmul(x), x @ w.data)
        np.testing.assert_allclose(forward(z), expected, rtol=1e-14)


def test_an_imperative_step_inside_a_trace_is_refused():
    """backward() and an optimizer's step() inside jit (or grad) would run once, while the
    function is traced, and never again: refused, naming the user's line, nothing changed."""
    model = neuronika.nn.Linear(3, 2, dtype=np.float64)
    opt = neuronika.optim.SGD(model.parameters(), lr=0.1)
    weight = model.weight.data.copy()
    x, y = np.ones((4, 3)), np.zeros((4, 2))

    @neuronika.jit
    def step(x, y):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    with pytest.raises(neuronika.GradientError, match=r"backward\(\) inside a traced function \(at .*test_jit"):
        step(x, y)

    @neuronika.jit
    def update_only(x):
        opt.step()
        return x

    with pytest.raises(neuronika.GradientError, match=r"SGD.step\(\) inside a traced function.*value_and_grad"):
        update_only(x)
    with pytest.raises(neuronika.GradientError, match="inside a traced function"):
        neuronika.grad(lambda v: (v * model(x)).sum().backward() or v.sum())(np.ones((4, 2)))
    np.testing.assert_array_equal(model.weight.data, weight)
    assert model.weight.grad is None or not np.any(model.weight.grad)


def test_detach_and_data_inside_a_trace():
    """v.detach() inside a traced function is stop_gradient (its value computed on each call:
    it was once the first call's value for ever after), v.data is refused (it would be)."""
    scaled = neuronika.jit(lambda x: x * x.detach().sum())
    grad = neuronika.grad(lambda x: (x * x.detach()).sum())
    for value in (1.0, 2.0, 3.0):
        x = np.full(3, value)
        np.testing.assert_array_equal(scaled(x), x * x.sum())
        np.testing.assert_array_equal(grad(x), x)
    with pytest.raises(neuronika.GradientError, match=r"v.data of a traced variable \(at .*test_jit"):
        neuronika.jit(lambda x: x * x.data.sum())(np.ones(3))
    with pytest.raises(neuronika.GradientError, match="constant of the compiled program"):
        neuronika.grad(lambda x: (x * x.data).sum())(np.ones(3))
    w = neuronika.from_ndarray(np.ones(2))
    np.testing.assert_array_equal(neuronika.jit(lambda x: x + w.data)(np.ones(2)), [2.0, 2.0])   # not traced


def test_a_python_number_argument_cast():
    """A Python float reaches the program as itself (weakly typed); a cast of it failed
    ('float' object has no attribute 'astype'). Found by the forward-mode helper."""
    for mode in ("never", "always"):
        transform.cache_clear()
        with neuronika.config(compile=mode):
            f = neuronika.jit(lambda s: s.astype(np.float32) * 2)
            for value in (0.5, 1.5):
                out = f(value)
                assert out.dtype == np.float32 and out == np.float32(value * 2)


def test_random_numbers_inside_a_trace_are_drawn_on_every_call():
    """neuronika.rand / randn inside jit or grad draw on each call (a ``random`` op), not once
    at trace time; the numbers follow manual_seed as outside."""
    step = neuronika.jit(lambda x: x + neuronika.randn(x.shape, dtype=np.float64))
    x = np.zeros(1000)
    first, second = step(x), step(x)
    assert not np.array_equal(first, second)
    assert abs(first.mean()) < 0.15 and 0.85 < first.std() < 1.15
    neuronika.manual_seed(7)
    drawn = step(x)
    neuronika.manual_seed(7)
    np.testing.assert_array_equal(drawn, neuronika.randn(1000, dtype=np.float64).data)
    uniform = neuronika.jit(lambda x: x * neuronika.rand(x.shape, dtype=np.float32))(np.ones(500, np.float32))
    assert uniform.dtype == np.float32 and 0 <= uniform.min() and uniform.max() < 1
    g = neuronika.grad(lambda x: (x * neuronika.randn(x.shape, dtype=np.float64)).sum())
    assert not np.array_equal(g(x), g(x))
    with pytest.raises(TypeError, match="randn: a floating-point dtype"):
        neuronika.jit(lambda x: x + neuronika.randn(x.shape, dtype=np.int64))(x)


# ---- the generated entry of the last signature (functional._plain_entry) ----

def _entry_of(f):
    made = f.cache.entry
    return None if made is None else made[0]


def _tree_step(a, t, n, c, i):
    return {"s": a[0] * n + t["x"] * i, "c": c * a[1].sum()}, (a[1].T, n)


def _tree_args(shape=(2, 3), dtype=np.float64, n=2.0, i=3):
    rng = np.random.default_rng(0)
    return ([rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape).astype(dtype)],
            {"x": rng.standard_normal(shape[1]).astype(dtype)}, n, 1j, i)


def _flat_tree(tree):
    parts = []
    return parts, neuronika.tracing.tree_of(tree, parts)


def _assert_same_tree(got, want):
    got_parts, got_structure = _flat_tree(got)
    want_parts, want_structure = _flat_tree(want)
    assert got_structure == want_structure
    for g, w in zip(got_parts, want_parts):
        assert np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_array_equal(g, w)


def test_the_entry_takes_a_repeated_call_and_gives_the_general_paths_result():
    f = neuronika.jit(_tree_step)
    args = _tree_args()
    first = f(*args)
    assert _entry_of(f) is None                 # traced: no entry yet
    second = f(*args)                           # the hot path ran and made the entry
    entry = _entry_of(f)
    assert entry is not None
    for _ in range(3):
        _assert_same_tree(f(*args), second)
    _assert_same_tree(second, first)
    _assert_same_tree(second, _tree_step(*args))
    assert _entry_of(f) is entry and f.stats.traced == 1


@pytest.mark.parametrize("change", [
    "shape", "dtype", "tuple for list", "dict order", "dict key", "bool for int", "numpy float",
    "huge int", "longer list", "fewer arguments", "float for complex"])
def test_the_entry_refuses_another_signature(change):
    f = neuronika.jit(_tree_step)
    args = _tree_args()
    f(*args)
    f(*args)
    entry = _entry_of(f)
    assert entry is not None
    a, t, n, c, i = args
    other = {
        "shape": lambda: _tree_args(shape=(3, 3)),
        "dtype": lambda: _tree_args(dtype=np.float32),
        "tuple for list": lambda: (tuple(a), t, n, c, i),
        "dict order": lambda: (a, {"y": t["x"], "x": t["x"]}, n, c, i),
        "dict key": lambda: (a, {"y": t["x"]}, n, c, i),
        "bool for int": lambda: (a, t, n, c, True),
        "numpy float": lambda: (a, t, np.float64(n), c, i),
        "huge int": lambda: (a, t, n, c, 2 ** 64),
        "longer list": lambda: (a + [a[0]], t, n, c, i),
        "fewer arguments": lambda: (a, t, n, c),
        "float for complex": lambda: (a, t, n, 1.0, i),
    }[change]()
    from neuronika.functional import _MISS
    assert entry(other) is _MISS
    if change == "fewer arguments":
        with pytest.raises(TypeError):
            f(*other)
        return
    if change == "dict key":
        with pytest.raises(KeyError):
            f(*other)
        return
    if change == "huge int":
        _assert_same_tree(f(*other), _tree_step(*other))     # beyond int64: a static value
        return
    _assert_same_tree(f(*other), _tree_step(*other))
    _assert_same_tree(f(*args), _tree_step(*args))           # and back


def test_alternating_signatures_keep_an_entry_each():
    f = neuronika.jit(lambda x: (x * 2).sum())
    a, b = np.ones(3), np.ones(4)
    for _ in range(3):
        assert f(a) == 6.0 and f(b) == 8.0
    assert len(f.cache.entries) == 2 and f.stats.traced == 2


def test_the_entry_goes_with_the_cache():
    f = neuronika.jit(lambda x: x * 2)
    for _ in range(3):
        f(np.ones(3))
    assert _entry_of(f) is not None
    transform.cache_clear()
    assert _entry_of(f) is None and not f.cache.entries
    np.testing.assert_array_equal(f(np.ones(3)), [2.0, 2.0, 2.0])


SHIFT = np.zeros(3)


def test_the_entry_sees_a_rebound_global():
    global SHIFT
    f = neuronika.jit(lambda x: x + SHIFT)
    for _ in range(3):
        np.testing.assert_array_equal(f(np.ones(3)), np.ones(3))
    assert _entry_of(f) is not None
    SHIFT = np.full(3, 2.0)
    try:
        np.testing.assert_array_equal(f(np.ones(3)), np.full(3, 3.0))
        np.testing.assert_array_equal(f(np.ones(3)), np.full(3, 3.0))
    finally:
        SHIFT = np.zeros(3)


def test_no_entry_where_a_python_number_is_read():
    """A trace that checks a value per call (``range(n)``) runs through ``Trace.run``."""
    @neuronika.jit
    def f(x, n):
        for _ in range(n):
            x = x * 2
        return x

    for n in (1, 1, 1, 2, 2, 3):
        np.testing.assert_array_equal(f(np.ones(2), n), np.full(2, 2.0 ** n))
    assert _entry_of(f) is None


def test_the_entry_raises_the_anomaly_naming_the_line():
    f = neuronika.jit(lambda x: nnp.log(x) * 2)
    with neuronika.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(3):
            f(np.ones(2))
        assert _entry_of(f) is not None
        with pytest.raises(neuronika.errors.AnomalyError, match=r"op log .* built at .*test_jit.py"):
            f(-np.ones(2))


def test_a_whole_step_through_the_entry_matches_the_pieces():
    """The hot path's entry runs the same program: 20 Adam steps agree with the pieces."""
    opt = optim.adam(1e-2)
    step = make_step(opt)
    p, x, y = params_tree(), *data()
    s = opt.init(p)
    q, r = params_tree(), opt.init(params_tree())
    for _ in range(20):
        p, s, value = step(p, s, x, y)
        v, g = neuronika.value_and_grad(loss_fn)(q, x, y)
        u, r = opt.update(g, r, q)
        q = optim.apply_updates(q, u)
        np.testing.assert_allclose(value, v, rtol=1e-13)
    assert _entry_of(step) is not None
    for a, b in zip(leaves(p), leaves(q)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("face", ["jit", "grad", "value_and_grad"])
def test_each_detect_anomaly_mode_has_its_own_trace(face):
    """A function cached outside detect_anomaly() checks inside it (it used to run its
    unchecked program there), one traced inside does not raise outside it, and moving between
    the two modes traces nothing more."""
    def fn(x):
        return (nnp.log(x) * 2).sum()

    f = {"jit": neuronika.jit, "grad": neuronika.grad, "value_and_grad": neuronika.value_and_grad}[face](fn)
    good, bad = np.ones(2), -np.ones(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(3):
            f(good)
        for k in range(2):
            with neuronika.detect_anomaly():
                f(good)
                if k == 0:
                    assert "because detect_anomaly() is on, and was off when it was traced" in transform.explain(f)
                with pytest.raises(neuronika.errors.AnomalyError, match=r"op log .* built at .*test_jit.py"):
                    f(bad)
            f(bad)                                          # NaN, no check
    assert f.stats.traced == 2


def test_the_entry_takes_static_numbers_strings_and_tuples():
    """Static arguments (static_argnums) of plain kinds are checked by type and value in the
    entry: 1, 1.0 and True stay three signatures, as in the general path."""
    x = np.arange(4.0)

    @functools.partial(neuronika.jit, static_argnums=(1, 2))
    def f(x, scale, cfg):
        return x * scale + len(cfg[1]) * cfg[0]

    calls = [(2, (1.5, "ab")), (2, (1.5, "ab")), (2.0, (1.5, "ab")), (True, (1.5, "ab")),
             (2, (1, "ab")), (2, (1.5, "abc")), (3, (1.5, "ab")), (2, (1.5, "ab"))]
    traced = set()
    for scale, cfg in calls:
        got = f(x, scale, cfg)
        np.testing.assert_array_equal(got, x * scale + len(cfg[1]) * cfg[0])
        traced.add((type(scale), scale, tuple(type(c) for c in cfg), cfg))
    assert f.stats.traced == len(traced) == 6
    assert _entry_of(f) is not None
    from neuronika.functional import _MISS
    assert _entry_of(f)((x, 2, (1.5, "ab"))) is not _MISS
    for other in [(x, 2.0, (1.5, "ab")), (x, True, (1.5, "ab")), (x, 2, (1, "ab")), (x, 2, [1.5, "ab"]),
                  (x, 2, (1.5, "ab"), 0)]:
        assert _entry_of(f)(other) is _MISS


def test_no_entry_for_a_static_value_of_another_kind():
    class Config:
        def __init__(self, n):
            self.n = n

        def __hash__(self):
            return hash(self.n)

        def __eq__(self, other):
            return isinstance(other, Config) and other.n == self.n

    f = neuronika.jit(lambda x, c: x * c.n, static_argnums=(1,))
    for n in (2, 2, 2, 3, 3):
        np.testing.assert_array_equal(f(np.ones(2), Config(n)), np.full(2, float(n)))
    assert _entry_of(f) is None and f.stats.traced == 2
    g = neuronika.jit(lambda x, s: x * 2 if s != s else x, static_argnums=(1,))     # NaN: never ==
    for _ in range(3):
        np.testing.assert_array_equal(g(np.ones(2), float("nan")), np.full(2, 2.0))
