"""Buffers kept between calls (``transform/buffers.py``): large temporaries are written into
the same memory every call, and nothing a caller can see is ever one of them."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import neuronika as nk
from neuronika import numpy as nnp
from neuronika.nn import functional as F
from neuronika.nn.conv import conv, conv2d
from neuronika.ops import kernels
from neuronika.transform import buffers

BIG = 128           # a (BIG, 256) float32 array is 128 kB: kept


@pytest.fixture(autouse=True)
def _fresh_cache():
    nk.transform.cache_clear()
    yield
    nk.transform.cache_clear()


def _params(seed=0, width=256):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((32, width)).astype(np.float32) * 0.2,
            rng.standard_normal(width).astype(np.float32) * 0.1,
            rng.standard_normal((width, 10)).astype(np.float32) * 0.1]


def _batch(n, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 32)).astype(np.float32)


def mlp(params, x):
    w1, b1, w2 = params
    h = nnp.tanh(x @ w1 + b1)
    return nnp.sum((h @ w2) ** 2)


def cnn(w1, b1, w2, x):
    h = conv2d(x, w1, b1).relu()
    return (conv2d(h, w2).relu() ** 2).mean()


def _cnn_args(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((8, 1, 3, 3)).astype(np.float32), rng.standard_normal(8).astype(np.float32),
            rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.3,
            rng.standard_normal((n, 1, 28, 28)).astype(np.float32))


def _unkept(fn, monkeypatch, *args):
    """``fn(*args)`` from programs compiled without kept buffers."""
    nk.transform.cache_clear()
    with monkeypatch.context() as patch:
        patch.setattr(buffers, "KEEP", False)
        result = fn(*args)
    nk.transform.cache_clear()
    return result


def _same(a, b):
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---- the generated code ------------------------------------------------------------------------

def test_large_temporaries_are_kept_and_small_ones_are_not():
    fn = nk.value_and_grad(mlp)
    params = _params()
    with nk.config(compile="always"):
        small = fn.source(params, _batch(4))
        nk.transform.cache_clear()
        big = fn.source(params, _batch(BIG))
    assert "_B = _take((" in big and "_give(_B)" in big and ", out=_B[" in big
    assert big.index("_give(_B)") < big.index("return ")
    assert "_B" not in small


def test_a_value_a_statement_may_keep_is_written_only_when_nothing_holds_it():
    # max_pool's kernel is not marked fresh: its argument (the ReLU's output) may be kept by
    # it, so its buffer is handed out again only once nothing references it
    def net(w, x):
        return (F.max_pool2d(conv(x, w).relu(), 2) ** 2).sum()

    w, x = _cnn_args()[0], _cnn_args()[3]
    with nk.config(compile="always"):
        text = nk.grad(net).source(w, x)
    relu = next(line for line in text.splitlines() if "xp.maximum(" in line)
    assert "out=_unused(_B, " in relu
    assert "conv_forward(x1, p0, (1, 1), (1, 1), 1, out=_B[0])" in text     # (the pass ran)


def test_a_gradient_held_in_p_grad_is_not_written_and_its_memory_is_used_after_zero_grad():
    w = nk.from_ndarray(np.random.default_rng(0).standard_normal((256, 128))).requires_grad()
    x = nk.from_ndarray(np.random.default_rng(1).standard_normal((64, 256)))
    with nk.config(compile="always"):
        grads = []
        for k in range(4):
            ((x * (k + 1.0)).mm(w).tanh() ** 2).sum().backward()
            grads.append((w.grad, w.grad.copy()))
            w.zero_grad()
        for held, copy in grads:                  # every one still held: none written again
            np.testing.assert_array_equal(held, copy)
        addresses = set()
        del grads, held
        for _ in range(4):
            loss = (x.mm(w).tanh() ** 2).sum()
            loss.backward()
            addresses.add(w.grad.ctypes.data)
            w.zero_grad()
        gradient = next(line for line in loss.source().splitlines() if line.strip().startswith("_B[") and
                        ".T, " in line)
    assert "out=_unused(_B, " in gradient         # the returned gradient: kept while unreferenced
    assert len(addresses) <= 2                    # dropped by zero_grad: the same memory again


def test_a_jitted_steps_new_parameters_alternate_between_two_arrays():
    opt = nk.optim.sgd(0.01)

    @nk.jit
    def step(params, state, x):
        value, g = nk.value_and_grad(lambda p: (nnp.tanh(x @ p[0]) ** 2).sum())(params)
        updates, state = opt.update(g, state, params)
        return nk.optim.apply_updates(params, updates), state, value

    rng = np.random.default_rng(2)
    params, x = [rng.standard_normal((256, 128))], rng.standard_normal((16, 256))
    state, seen, history = opt.init(params), [], []
    for _ in range(6):
        params, state, _ = step(params, state, x)
        seen.append(params[0].ctypes.data)
        history.append((params[0], params[0].copy()))
    for held, copy in history:                    # held by the test: never written again
        np.testing.assert_array_equal(held, copy)
    del history, held
    for _ in range(6):
        params, state, _ = step(params, state, x)
        seen.append(params[0].ctypes.data)
    assert len(set(seen[-4:])) == 2


# ---- same values, and nothing the caller holds is overwritten ------------------------------------

def test_same_values_as_without_kept_buffers(monkeypatch):
    fn = nk.value_and_grad(mlp)
    params, x = _params(), _batch(BIG)
    expected = _unkept(fn, monkeypatch, params, x)
    with nk.config(compile="always"):
        for _ in range(3):
            _same(fn(params, x), expected)
    args = _cnn_args()
    cnn_fn = nk.value_and_grad(cnn, argnums=(0, 1, 2))
    expected = _unkept(cnn_fn, monkeypatch, *args)
    with nk.config(compile="always"):
        for _ in range(3):
            _same(cnn_fn(*args), expected)


_RETURNED = {
    "itself": lambda h: h,
    "transposed": lambda h: h.T,
    "reshaped": lambda h: nnp.reshape(h, (-1,)),
    "sliced": lambda h: h[:3],
    "in a tuple": lambda h: (h * 2.0, h),
    "in a dict": lambda h: {"h": h[1:], "sum": nnp.sum(h)},
    "written into": lambda h: nnp.exp(h) + 1.0,       # exp and + write into h's buffer
}


@pytest.mark.parametrize("compile_mode", ["always", "auto"])
@pytest.mark.parametrize("how", list(_RETURNED))
def test_returned_values_and_their_views_survive_the_next_call(how, compile_mode):
    returned = _RETURNED[how]
    fn = nk.jit(lambda w, x: returned(nnp.tanh(x @ w)))
    w = np.random.default_rng(0).standard_normal((32, 256)).astype(np.float32)

    def copied(result):
        if isinstance(result, dict):
            return {k: copied(v) for k, v in result.items()}
        if isinstance(result, tuple):
            return tuple(copied(v) for v in result)
        return np.array(result, copy=True)

    with nk.config(compile=compile_mode):
        first = fn(w, _batch(BIG, seed=1))
        kept = copied(first)
        for seed in range(2, 6):
            fn(w, _batch(BIG, seed=seed))
    if isinstance(first, dict):
        first, kept = [first[k] for k in sorted(first)], [kept[k] for k in sorted(kept)]
    _same(first, kept)


def test_a_temporary_only_read_is_kept():
    # the same function as above, returning a new array made from the temporary
    w = np.random.default_rng(0).standard_normal((32, 256)).astype(np.float32)
    with nk.config(compile="always"):
        text = nk.jit(lambda w, x: nnp.sum(nnp.tanh(x @ w), axis=1)).source(w, _batch(BIG))
    assert "out=_B[0]" in text


def test_gradients_and_aux_survive_the_next_call():
    def loss(params, x):
        w1, b1, w2 = params
        h = nnp.tanh(x @ w1 + b1)
        return nnp.sum((h @ w2) ** 2), {"hidden": h}

    fn = nk.value_and_grad(loss, has_aux=True)
    params = _params()
    with nk.config(compile="always"):
        (value, aux), grads = fn(params, _batch(BIG, seed=1))
        kept = np.array(value), np.array(aux["hidden"]), [np.array(g) for g in grads]
        for seed in range(2, 5):
            fn(params, _batch(BIG, seed=seed))
    _same((value, aux["hidden"], list(grads)), kept)


def test_imperative_steps_match(monkeypatch):
    def steps():
        params = [nk.from_ndarray(p).requires_grad() for p in _params()]
        out = []
        for seed in range(4):
            x = nk.from_ndarray(_batch(BIG, seed=seed))
            loss = mlp(params, x)
            loss.backward()
            out.append([loss.data.copy()] + [p.grad.copy() for p in params])
            for p in params:
                p.zero_grad()
        return out

    expected = _unkept(steps, monkeypatch)
    _same(steps(), expected)


# ---- sizes, threads, failures ----------------------------------------------------------------

def test_one_program_over_several_batch_sizes(monkeypatch):
    fn = nk.value_and_grad(mlp)
    params = _params()
    sizes = [BIG, 2 * BIG, BIG, 3 * BIG, 2 * BIG, 5 * BIG]
    expected = [_unkept(fn, monkeypatch, params, _batch(n, seed=n)) for n in sizes]
    with nk.config(compile="always"):
        for n, want in zip(sizes, expected):
            _same(fn(params, _batch(n, seed=n)), want)


def test_a_batch_below_the_threshold_runs_the_family_s_program(monkeypatch):
    # the size thresholds do not split a family: a short last batch takes the program (and
    # kept buffers of its own size) instead of compiling one
    fn = nk.value_and_grad(mlp)
    params = _params()
    with nk.config(compile="never"):                # the interpreter: the same numbers
        expected = [fn(params, _batch(n, seed=n)) for n in (BIG, 3, BIG)]
    compiled = []
    monkeypatch.setattr(nk.transform.codegen, "_compile", _counting(nk.transform.codegen._compile, compiled))
    with nk.config(compile="always"):
        for n, want in zip((BIG, 3, BIG), expected):
            _same(fn(params, _batch(n, seed=n)), want)
    assert len(compiled) == 1


def _counting(compile_function, calls):
    def counted(name, params, body, returned, top, program, state):
        if not state.dry:                       # (a family's comparison writes the source only)
            calls.append(name)
        return compile_function(name, params, body, returned, top, program, state)
    return counted


def test_threads_take_their_own_buffers(monkeypatch):
    fn = nk.jit(nk.value_and_grad(mlp))
    params = _params()
    batches = [_batch(BIG, seed=s) for s in range(4)]
    expected = [_unkept(fn, monkeypatch, params, x) for x in batches]
    fn(params, batches[0])
    errors = []

    def work(k):
        try:
            for _ in range(30):
                _same(fn(params, batches[k]), expected[k])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_the_pool_hands_each_call_its_own_set():
    take, give = buffers.pool(2)
    a, b = take(((4,),)), take(((4,),))
    assert a is not b and a[:2] == [None, None] and a[-1] == ((4,),)
    give(a)
    assert take(((4,),)) is a               # handed back: used again
    assert take(((4,),)) is not b           # b was never given back (a call that raised)
    first = take(((0,),))
    give(first)
    for size in range(1, buffers.KEYS + 1):  # only the newest KEYS sizes keep their sets
        give(take(((size,),)))
    again = take(((0,),))
    assert again is not first and again[-1] == ((0,),)
    give(again)
    assert take(((0,),)) is again


def test_switched_off_nothing_is_kept(monkeypatch):
    monkeypatch.setattr(buffers, "KEEP", False)
    with nk.config(compile="always"):
        text = nk.value_and_grad(mlp).source(_params(), _batch(BIG))
    assert "_B" not in text


# ---- kernels that write into a given array -------------------------------------------------------

@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
def test_conv_kernels_write_into_out(stride):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 12, 12))
    w = rng.standard_normal((4, 3, 3, 3))
    y = kernels.conv_forward(x, w, stride, (1, 1), 1)
    out = np.full_like(y, np.nan)
    assert kernels.conv_forward(x, w, stride, (1, 1), 1, out=out) is out
    np.testing.assert_array_equal(out, y)
    g = rng.standard_normal(y.shape)
    dx = kernels.conv_input_grad(g, w, x.shape, stride, (1, 1), 1)
    into = np.full_like(dx, np.nan)
    assert kernels.conv_input_grad(g, w, x.shape, stride, (1, 1), 1, out=into) is into
    np.testing.assert_array_equal(into, dx)
    wrong = np.empty((1,) + y.shape[1:])                # not the result's shape: a new array
    got = kernels.conv_forward(x, w, stride, (1, 1), 1, out=wrong)
    assert got is not wrong
    np.testing.assert_array_equal(got, y)


def test_conv_scratch_serves_shapes_and_dtypes_in_turn():
    rng = np.random.default_rng(4)
    cases = [((2, 3, 9, 9), (4, 3, 3, 3), np.float64), ((6, 8, 20, 20), (8, 8, 3, 3), np.float32),
             ((2, 3, 9, 9), (4, 3, 3, 3), np.float32)]
    for xs, ws, dtype in cases * 2:
        x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
        y = kernels.conv_forward(x, w, (1, 1), (1, 1), 1)
        windows = np.lib.stride_tricks.sliding_window_view(x, ws[2:], axis=(2, 3))
        expected = np.einsum("nchwij,ocij->nohw", windows, w)
        np.testing.assert_allclose(y, expected, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)
        g = rng.standard_normal(y.shape).astype(dtype)
        dw = kernels.conv_weight_grad(g, x, ws[2:], (1, 1), (1, 1), 1)
        np.testing.assert_allclose(dw, np.einsum("nohw,nchwij->ocij", g, windows),
                                   rtol=1e-3 if dtype == np.float32 else 1e-12, atol=1e-3)
