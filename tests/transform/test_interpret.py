"""The interpreter (``transform.interpret``): a first-seen signature runs without code
generation and gives the generated program's results bit for bit; ``neuronika.config``
says when a signature is compiled."""
import contextvars
import linecache
import threading
import warnings

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp
from neuronika import nn, transform
from neuronika.graph import linearize, modes
from neuronika.nn import functional as F
from neuronika.transform import codegen, interpret, run
from neuronika.transform.cache import CACHE
from tests.numpy_api import cases as numpy_cases


@pytest.fixture(autouse=True)
def fresh():
    transform.cache_clear()
    run.forget_interpreted()
    yield
    run.forget_interpreted()


def same(a, b):
    """The same bits (dtype, shape, bytes: -0.0 and NaN payloads included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same(a, b, what=""):
    assert same(a, b), f"{what}: {a!r} != {b!r}"


def _generated_files():
    return {k for k in linecache.cache if isinstance(k, str) and k.startswith("<neuronika ")
            and "interpreter" not in k}


# ---- every op family: the numpy_api cases, interpreted against compiled --------------------

def _run_case(case, mode, differentiable):
    """(values, gradients, warnings) of a case under a compile mode: the values of its
    results, then (for differentiable inputs) ``backward`` with a fixed random seed and the
    inputs' gradients; an error as ("error", type, message) in place of what it stopped."""
    with neuronika.config(compile=mode), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values, grads = _values_and_grads(case, differentiable)
    return values, grads, [(w.category.__name__, str(w.message)) for w in caught]


def _error(error):
    return ("error", type(error).__name__, str(error))


def _values_and_grads(case, differentiable):
    neuronika.manual_seed(0)
    xs = case.variables(differentiable)
    try:
        results = numpy_cases._flat(case.call(nnp, *xs))
    except Exception as error:          # noqa: BLE001 - compared between the modes
        return _error(error), None
    values = []
    for r in results:
        if isinstance(r, neuronika.Var):
            try:
                values.append(np.array(r.data))
            except Exception as error:  # noqa: BLE001
                values.append(_error(error))
        else:
            values.append(r)
    grads = None
    parts = [r for r in results if isinstance(r, neuronika.Var) and r.dtype.kind in "fc"
             and r._node.requires_grad]
    if differentiable and parts:
        out = parts[0] if len(parts) == 1 else nnp.concatenate([nnp.ravel(p) for p in parts])
        seed = np.asarray(np.random.default_rng(1).standard_normal(out.shape)).astype(out.dtype)
        try:
            out.backward(seed if out.shape else seed.item())
            grads = [None if x.grad is None else np.array(x.grad) for x in xs]
        except Exception as error:      # noqa: BLE001
            grads = _error(error)
    return values, grads


def _is_error(x):
    return type(x) is tuple and len(x) == 3 and isinstance(x[0], str) and x[0] == "error"


def _compare(a, b, what):
    assert a[2] == b[2], f"{what}: warnings differ"
    if _is_error(a[0]) or _is_error(b[0]):
        assert a[:2] == b[:2], what
        return
    assert len(a[0]) == len(b[0]), what
    for u, v in zip(a[0], b[0]):
        if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
            assert_same(u, v, what)
        else:
            assert repr(u) == repr(v), what
    if _is_error(a[1]) or _is_error(b[1]):
        assert a[1] == b[1], what
    elif a[1] is not None or b[1] is not None:
        for u, v in zip(a[1], b[1]):
            assert (u is None and v is None) or same(u, v), f"{what}: gradient {u!r} != {v!r}"


@pytest.mark.parametrize("case", numpy_cases.params([c for _, c in numpy_cases.all_cases()]))
def test_every_numpy_case_interpreted_equals_compiled_bit_for_bit(case):
    for differentiable in (False, True):
        before = len(CACHE.programs)
        interpreted = _run_case(case, "never", differentiable)
        assert len(CACHE.programs) == before, "compile='never' compiled a program"
        compiled = _run_case(case, "always", differentiable)
        _compare(interpreted, compiled, f"{case} (differentiable={differentiable})")


# ---- the functional face's hook: fused programs, several outputs, wrt, unit seed, guards ---

def _graph(case):
    xs = case.variables(True)
    built = case_loss(case, xs)
    return None if built is None else (xs, *built)


def case_loss(case, xs):
    """(out, loss) of a case over ``xs``: its float results, flattened and joined, and the real
    sum of their squares; None where no result needs a gradient."""
    parts = [r for r in numpy_cases._flat(case.call(nnp, *xs)) if isinstance(r, neuronika.Var)
             and r.dtype.kind in "fc"]
    if not parts or not any(p._node.requires_grad for p in parts):
        return None
    out = parts[0] if len(parts) == 1 else nnp.concatenate([nnp.ravel(p) for p in parts])
    loss = nnp.sum(out * out)
    if loss.dtype.kind == "c":
        loss = nnp.real(loss)
    return out, loss


@pytest.mark.parametrize("case", numpy_cases.params(
    [c for _, c in numpy_cases.all_cases() if c.wrt and c.order >= 1][::3]))
def test_fused_programs_interpreted_equal_compiled(case):
    """What ``grad`` compiles (value and gradient in one function, the seed known to be 1,
    gradients only for ``wrt``, dead values dropped) gives the same bits interpreted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = _graph(case)
        if built is None:
            return
        xs, out, loss = built
        order, leaves, _ = linearize(loss._node, out._node)
        position = {node: i for i, node in enumerate(order)}
        wrt = [x._node for k, x in enumerate(xs) if k in case.wrt[:1]]
        values = [leaf.value for leaf in leaves]
        unit = np.ones((), loss.dtype)
        unit.flags.writeable = False
        for outputs in ([position[loss._node]], [], [position[out._node]]):
            kwargs = dict(outputs=outputs, loss=position[loss._node], fused=True, unit_seed=True,
                          wrt=wrt)
            neuronika.manual_seed(0)
            want = codegen.build(order, leaves, **kwargs).forward(unit, *values)
            neuronika.manual_seed(0)
            got = interpret.build(order, leaves, **kwargs).forward(unit, *values)
            _assert_nested_same(got, want, str(case))


def _assert_nested_same(got, want, what):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), what
        for g, w in zip(got, want):
            _assert_nested_same(g, w, what)
    else:
        assert_same(got, want, what)


def test_guards_raise_retrace_where_the_program_does():
    x = neuronika.from_ndarray(np.array([1.0, 2.0])).requires_grad()
    s = x.sum()
    loss = (x * s).sum()
    order, leaves, _ = linearize(loss._node)
    position = {node: i for i, node in enumerate(order)}
    values = [leaf.value for leaf in leaves]
    unit = np.ones(())
    for expected, raises in ((3.0, False), (4.0, True)):
        guards = [(position[s._node], "float", expected)]
        for build in (codegen.build, interpret.build):
            program = build(order, leaves, loss=len(order) - 1, fused=True, unit_seed=True,
                            guards=guards, outputs=[len(order) - 1])
            if raises:
                with pytest.raises(codegen.Retrace):
                    program.forward(unit, *values)
            else:
                program.forward(unit, *values)


def test_forward_only_plan_with_several_outputs():
    a = neuronika.from_ndarray(np.arange(6.0).reshape(2, 3))
    b = a.exp()
    c = (b * 2).sum(axis=0)
    order, leaves, _ = linearize(c._node, b._node)
    position = {node: i for i, node in enumerate(order)}
    outputs = [position[c._node], position[b._node]]
    want = codegen.build(order, leaves, outputs=outputs).forward(*[leaf.value for leaf in leaves])
    got = interpret.build(order, leaves, outputs=outputs).forward(*[leaf.value for leaf in leaves])
    _assert_nested_same(got, want, "outputs")


# ---- nn layers and losses ------------------------------------------------------------------

def _model_grads(build_model, inputs, loss_fn, mode):
    with neuronika.config(compile=mode):
        neuronika.manual_seed(0)
        model = build_model()
        out = model(*inputs)
        if isinstance(out, tuple):
            out = out[0]
        loss = loss_fn(out)
        value = np.array(loss.data)
        loss.backward()
        return value, [np.array(p.grad) for p in model.parameters()]


_rng = np.random.default_rng(0)
_x2 = _rng.standard_normal((4, 6)).astype(np.float32)
_img = _rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
_seq = _rng.standard_normal((5, 2, 3)).astype(np.float32)
_tokens = np.array([[1, 3, 3], [0, 2, 1]])
MODELS = {
    "mlp": (lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3),
                                  nn.Softmax()), (_x2,)),
    "mlp-float64": (lambda: nn.Sequential(nn.Linear(6, 5, dtype=np.float64), nn.Sigmoid(),
                                          nn.Linear(5, 2, dtype=np.float64), nn.Softplus()),
                    (_x2.astype(np.float64),)),
    "conv-pool": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                        nn.MaxPool2d(2), nn.Conv2d(4, 2, 3), nn.AvgPool2d(2),
                                        nn.Flatten(), nn.LeakyReLU()), (_img,)),
    "layernorm-dropout": (lambda: nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6), nn.Dropout(0.3),
                                                nn.Linear(6, 4), nn.LogSoftmax()), (_x2,)),
    "batchnorm1d": (lambda: nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh()), (_x2,)),
    "embedding": (lambda: nn.Sequential(nn.Embedding(4, 5), nn.Flatten(), nn.Linear(15, 2)), (_tokens,)),
    "rnn": (lambda: nn.RNN(3, 4, num_layers=2), (_seq,)),
    "lstm": (lambda: nn.LSTM(3, 4), (_seq,)),
    "gru": (lambda: nn.GRU(3, 4, dropout=0.0), (_seq,)),
    "cells": (lambda: nn.Sequential(nn.Linear(3, 3), nn.Tanh()), (_seq[0],)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_nn_layers_interpreted_equal_compiled(name):
    build, inputs = MODELS[name]
    loss_fn = (lambda out: (out * out).sum())
    got = _model_grads(build, [neuronika.from_ndarray(a) for a in inputs], loss_fn, "never")
    want = _model_grads(build, [neuronika.from_ndarray(a) for a in inputs], loss_fn, "always")
    assert_same(got[0], want[0], name)
    assert len(got[1]) == len(want[1]) > 0
    for g, w in zip(got[1], want[1]):
        assert_same(g, w, name)


_logits = _rng.standard_normal((6, 4)).astype(np.float32)
_probs = 1 / (1 + np.exp(-_rng.standard_normal((6, 4)))).astype(np.float32)
_classes = np.array([0, 3, 1, 1, 2, -100])
LOSSES = {
    "mse": lambda x: F.mse_loss(x, _probs),
    "l1": lambda x: F.l1_loss(x, _probs, reduction="sum"),
    "huber": lambda x: F.huber_loss(x, _probs, delta=0.5),
    "smooth-l1": lambda x: F.smooth_l1_loss(x, _probs, reduction="none").sum(),
    "bce": lambda x: F.binary_cross_entropy(x.sigmoid(), _probs),
    "bce-logits": lambda x: F.binary_cross_entropy_with_logits(x, _probs, pos_weight=np.full(4, 2.0, np.float32)),
    "cross-entropy": lambda x: F.cross_entropy(x, _classes, label_smoothing=0.1),
    "cross-entropy-weighted": lambda x: F.cross_entropy(x, _classes, np.arange(1, 5, dtype=np.float32)),
    "nll": lambda x: F.nll_loss(x.log_softmax(axis=1), _classes, reduction="sum"),
    "kl-div": lambda x: F.kl_div(x.log_softmax(axis=1), _probs / _probs.sum(1, keepdims=True)),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_interpreted_equal_compiled(name):
    results = []
    for mode in ("never", "always"):
        with neuronika.config(compile=mode):
            x = neuronika.from_ndarray(_logits.copy()).requires_grad()
            loss = LOSSES[name](x)
            loss.backward()
            results.append((np.array(loss.data), np.array(x.grad)))
    assert_same(results[0][0], results[1][0], name)
    assert_same(results[0][1], results[1][1], name)


def test_checks_inside_a_loss_raise_the_same_error_interpreted():
    for mode in ("never", "always"):
        with neuronika.config(compile=mode):
            with pytest.raises(IndexError, match="class"):
                F.cross_entropy(neuronika.from_ndarray(_logits).requires_grad(),
                                np.array([0, 9, 1, 1, 2, 0])).backward()


# ---- what the generated code does that the interpreter must do too -------------------------

def _both(fn):
    """fn() under compile='never' and compile='always'."""
    with neuronika.config(compile="never"):
        got = fn()
    with neuronika.config(compile="always"):
        want = fn()
    return got, want


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_detect_anomaly_messages_are_identical(where):
    def fn():
        if where == "forward":
            x = neuronika.from_ndarray(np.array([1.0, -1.0])).requires_grad()
        else:
            x = neuronika.from_ndarray(np.array([0.0, 4.0])).requires_grad()
        with neuronika.detect_anomaly(), np.errstate(all="ignore"):
            y = (x * 2).ln().sum() if where == "forward" else x.sqrt().sum()
            with pytest.raises(neuronika.AnomalyError) as info:
                y.backward()
        return str(info.value)

    got, want = _both(fn)
    assert got == want and f"({where} pass)" in got and "test_interpret.py" in got


def test_dropout_masks_and_their_gradients_are_the_same():
    def fn():
        neuronika.manual_seed(3)
        w = neuronika.from_ndarray(np.linspace(-1, 1, 40, dtype=np.float32).reshape(4, 10)).requires_grad()
        h = w.dropout(0.5).tanh()
        loss = (h.dropout(0.25) * h).sum()
        value = np.array(loss.data)
        loss.backward()
        return value, np.array(w.grad)

    got, want = _both(fn)
    assert_same(got[0], want[0])
    assert_same(got[1], want[1])
    assert np.count_nonzero(got[1]) < got[1].size           # masks did drop something


def test_retained_gradients_are_the_same():
    def fn():
        x = neuronika.from_ndarray(np.linspace(0.5, 2, 6).reshape(2, 3)).requires_grad()
        h = x.exp()
        h.retain_grad()
        s = (h * x).sum(axis=0)
        s.retain_grad()
        loss = s.prod()
        loss.retain_grad()
        loss.backward()
        return [np.array(v.grad) for v in (x, h, s, loss)]

    got, want = _both(fn)
    for g, w in zip(got, want):
        assert_same(g, w)


def test_accumulate_template_and_views_are_handled_as_the_program_does():
    """index's adjoint adds into the gradient in place (``add.at`` with repeated indices)
    when the gradient is already a fresh array of the input's shape; a gradient that is a
    view (reshape) or the seed is never written to."""
    def fn():
        x = neuronika.from_ndarray(np.arange(1.0, 7.0)).requires_grad()
        y = x * 2
        r = y.reshape((2, 3))
        loss = (y[np.array([0, 0, 3])].sum() + y[np.array([3, 3, 5])] ** 2).sum() + r.sum() + (r * r).sum()
        seed = np.ones(())
        loss.backward(seed)
        assert seed == 1
        return np.array(x.grad)

    got, want = _both(fn)
    assert_same(got, want)
    x = neuronika.from_ndarray(np.arange(1.0, 7.0)).requires_grad()
    y = x * 2
    loss = y[np.array([0, 0, 3])].sum() + y[np.array([3, 3, 5])].sum()
    order, leaves, _ = linearize(loss._node)
    modes_used = {slot[2] for entry in interpret.build(order, leaves).backward_plan for slot in entry[3]}
    assert interpret.ACC in modes_used


@pytest.mark.parametrize("mode", ["never", "always"])
def test_arrays_the_backward_did_not_allocate_are_never_written(mode):
    """A gradient that is the user's seed, a view of it (reshape's adjoint) or a retained
    gradient is added to into a new array, never in place."""
    with neuronika.config(compile=mode):
        x = neuronika.from_ndarray(np.arange(1.0, 7.0)).requires_grad()
        a = x * 2
        a.retain_grad()
        s = a.reshape((2, 3)) + a.reshape((2, 3))        # two views of s's gradient into a
        s.retain_grad()
        root = s + s                                       # the seed itself, twice, into s
        seed = np.arange(1.0, 7.0).reshape(2, 3)
        kept = seed.copy()
        root.backward(seed)
        assert_same(seed, kept)
        np.testing.assert_array_equal(s.grad, 2 * kept)
        np.testing.assert_array_equal(a.grad, 4 * kept.ravel())
        np.testing.assert_array_equal(x.grad, 8 * kept.ravel())
        seed = np.arange(1.0, 7.0).reshape(2, 3)
        s.backward(seed)                                   # views of the seed itself into a
        assert_same(seed, kept)


def test_reading_the_value_then_changing_the_leaf_keeps_value_and_gradient_together():
    """The snapshot rule of ``transform.run``: a value read and its gradient belong together,
    interpreted as compiled."""
    def fn():
        w = neuronika.from_ndarray(np.array([1.0, 2.0, 3.0])).requires_grad()
        loss = (w * w.sin()).sum()
        value = float(loss.data)
        w.data[...] = 0                          # in place, after the read
        loss.backward()
        first = np.array(w.grad)
        loss.backward()                          # nothing read since: from the current leaves
        return value, first, np.array(w.grad)

    got, want = _both(fn)
    assert got[0] == want[0]
    assert_same(got[1], want[1])
    assert_same(got[2], want[2])
    w0 = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(got[1], np.sin(w0) + w0 * np.cos(w0))


def test_forward_then_backward_on_graph_interpreted_then_compiled():
    """auto: the first run interprets, the second compiles, the third hits; all agree."""
    x = neuronika.from_ndarray(np.linspace(-1, 1, 12).reshape(3, 4))
    w = neuronika.from_ndarray(np.linspace(0, 1, 8).reshape(4, 2)).requires_grad()
    grads = []
    for step in range(3):
        loss = (x.mm(w).tanh() ** 2).mean()
        loss.backward()
        grads.append(np.array(w.grad))
        w.grad = None
        assert len(CACHE.programs) == (0 if step == 0 else 1)
    assert_same(grads[0], grads[1])
    assert_same(grads[1], grads[2])


# ---- the switch ----------------------------------------------------------------------------

def test_config_reads_sets_and_restores():
    assert (neuronika.config().compile, neuronika.config().compile_after) == ("auto", 2)
    with neuronika.config(compile="never", compile_after=5) as cfg:
        assert (modes.compile, modes.compile_after) == ("never", 5)
        assert repr(cfg) == "config(compile='never', compile_after=5, fuse='auto')"
        with neuronika.config(compile="always"):
            assert (modes.compile, modes.compile_after) == ("always", 5)
        assert modes.compile == "never"
    assert (modes.compile, modes.compile_after) == ("auto", 2)


def test_config_as_a_setter_stays_set():
    def inside():
        neuronika.config(compile="never")
        return modes.compile

    assert contextvars.copy_context().run(inside) == "never"
    assert modes.compile == "auto"


@pytest.mark.parametrize("bad", [dict(compile="sometimes"), dict(compile=True), dict(compile_after=0),
                                 dict(compile_after=1.5), dict(compile_after=True)])
def test_config_refuses_bad_values(bad):
    with pytest.raises(ValueError):
        neuronika.config(**bad)
    assert neuronika.config().compile == "auto"


def test_config_is_per_thread():
    seen = []
    with neuronika.config(compile="never"):
        thread = threading.Thread(target=lambda: seen.append(modes.compile))
        thread.start()
        thread.join()
    assert seen == ["auto"]


@pytest.mark.parametrize("after", [1, 2, 3])
def test_auto_compiles_a_signature_on_its_compile_after_th_run(after):
    w = neuronika.ones(3).requires_grad()
    sizes = []
    files = _generated_files()
    with neuronika.config(compile="auto", compile_after=after):
        for _ in range(4):
            (w * w).sum().backward()
            sizes.append(len(CACHE.programs))
    assert sizes == [0] * (after - 1) + [1] * (5 - after)
    assert len(_generated_files() - files) == 2          # forward and backward, once
    info = transform.cache_info()
    assert (info.hits, info.misses) == (4 - after, after)
    np.testing.assert_array_equal(w.grad, np.full(3, 8.0, np.float32))


def test_always_compiles_at_once_and_never_never_compiles():
    w = neuronika.ones(3).requires_grad()
    with neuronika.config(compile="always"):
        (w * 3).sum().backward()
    assert len(CACHE.programs) == 1
    files = _generated_files()
    with neuronika.config(compile="never"):
        for _ in range(3):
            (w.exp() * 3).sum().backward()
            (w * 3).sum().backward()           # compiled already: still interpreted
    assert len(CACHE.programs) == 1 and _generated_files() == files
    assert transform.cache_info().hits == 0


def test_source_builds_the_program_even_when_nothing_is_compiled():
    with neuronika.config(compile="never"):
        w = neuronika.ones(3).requires_grad()
        loss = (w * w).sum()
        loss.backward()
        assert len(CACHE.programs) == 0
        assert "def backward(seed" in loss.source()


def test_interpreted_values_do_not_keep_the_graph_alive():
    import gc
    import weakref
    with neuronika.config(compile="never"):
        w = neuronika.ones(3).requires_grad()
        loss = (w.exp() * w).sum()
        _ = loss.data                           # a snapshot holding the plan
        ref = weakref.ref(loss._node)
        del loss, _
    gc.collect()
    assert ref() is None


def test_a_step_function_error_names_the_op():
    x = neuronika.from_ndarray(np.array([0.0, 1.0]))
    with neuronika.config(compile="never"), np.errstate(divide="raise"):
        with pytest.raises(FloatingPointError) as info:
            (x.ln() * 2).forward()
    import traceback
    assert "<neuronika interpreter: op log, forward>" in "".join(traceback.format_exception(info.value))


def test_threads_interpret_and_compile_the_same_signatures():
    errors = []

    def work(k):
        try:
            for i in range(30):
                w = neuronika.from_ndarray(np.full(4 + (i + k) % 3, 1.5)).requires_grad()
                loss = (w.tanh() * w).sum()
                loss.backward()
                np.testing.assert_allclose(w.grad, np.tanh(1.5) + 1.5 * (1 - np.tanh(1.5) ** 2))
        except BaseException as error:           # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(CACHE.programs) == 3


def test_kinds_tell_apart_attributes_that_compare_equal():
    """0.0 and -0.0 (and 1, 1.0, True) are equal keys but different constants: a function
    made for one node kind is not reused for the other."""
    x = neuronika.from_ndarray(np.array([-1.0, 2.0]))
    with neuronika.config(compile="never"):
        for slope in (0.0, -0.0, 0.0):
            got = neuronika.leaky_relu(x, slope).data
            assert_same(got, np.where(x.data > 0, x.data, slope * x.data))


def test_the_functional_hook_compiles_a_traced_signature_when_it_repeats():
    """``run.compiled_or_interpreted``: what ``tracing`` calls instead of
    ``TRACED.get_or_build`` to interpret a trace's first run."""
    from neuronika.transform.cache import ProgramCache
    cache = ProgramCache()
    x = neuronika.from_ndarray(np.array([1.0, 2.0])).requires_grad()
    loss = (x.tanh() * x).sum()
    order, leaves, key = linearize(loss._node)
    kwargs = dict(outputs=[len(order) - 1], loss=len(order) - 1, fused=True, unit_seed=True,
                  wrt=[x._node])
    unit = np.ones(())
    ran = []
    for _ in range(3):
        program = run.compiled_or_interpreted(
            cache, key, lambda: codegen.build(order, leaves, **kwargs),
            lambda: interpret.build(order, leaves, **kwargs))
        ran.append(isinstance(program, interpret.Plan))
        value, grads = program.forward(unit, x.data)
        np.testing.assert_allclose(grads[0], np.tanh(x.data) + x.data * (1 - np.tanh(x.data) ** 2),
                                   rtol=1e-14)
    assert ran == [True, False, False] and len(cache.programs) == 1
    with neuronika.config(compile="never"):
        assert isinstance(run.compiled_or_interpreted(cache, ("other",), None, lambda: interpret.build(
            order, leaves, **kwargs)), interpret.Plan)


@pytest.mark.parametrize("differentiable", [False, True])
def test_values_nothing_reads_later_are_freed_as_in_the_program(differentiable):
    import gc
    import tracemalloc
    size = 100_000 * 8
    x = neuronika.from_ndarray(np.ones(100_000))
    if differentiable:
        x = x.requires_grad()
    y = x
    for k in range(40):
        y = y * 1.01 if k % 2 else y + 0.1          # adjoints that read no forward value
    out = y.sum()
    gc.collect()
    tracemalloc.start()
    with neuronika.config(compile="never"):
        if differentiable:
            out.backward()
        else:
            out.forward()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * size, peak


def test_nothing_global_keeps_arrays_or_nodes_of_an_interpreted_graph():
    import gc
    import weakref
    with neuronika.config(compile="never"):
        w = neuronika.rand((50, 50)).requires_grad()
        loss = (w.tanh() * 3).dropout(0.5).sum()
        loss.backward()
    big = weakref.ref(w._node.value)
    node = weakref.ref(w._node)
    del w, loss
    gc.collect()
    assert big() is None and node() is None
    assert len(interpret._KINDS) > 0


# ---- the functional face: a first-seen trace runs interpreted, compiled when it repeats -----

class _Builds:
    """``codegen`` as the tracer sees it, counting the programs it generates."""

    def __init__(self):
        self.count = 0

    def build(self, *args, **kwargs):
        self.count += 1
        return codegen.build(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(codegen, name)


@pytest.fixture
def builds(monkeypatch):
    from neuronika import tracing
    counter = _Builds()
    monkeypatch.setattr(tracing, "codegen", counter)
    return counter


def _traces(f):
    return [t for group in f.cache.traces.values() for t in group]


@pytest.mark.parametrize("after", [1, 2, 3, 5])
def test_grad_is_interpreted_first_and_compiled_on_the_compile_after_th_call(builds, after):
    f = neuronika.grad(lambda x: (nnp.tanh(x) * x).sum())
    x = np.linspace(-1.0, 1.0, 5)
    results, counts, interpreted = [], [], []
    with neuronika.config(compile_after=after):
        for _ in range(after + 2):
            results.append(f(x))
            counts.append(builds.count)
            interpreted.append(isinstance(_traces(f)[0].program, interpret.Plan))
    assert counts == [0] * (after - 1) + [1] * 3
    assert interpreted == [True] * (after - 1) + [False] * 3
    assert len(_traces(f)) == 1 and f.stats.traced == 1          # traced once, never again
    for r in results[1:]:
        assert_same(r, results[0])
    found = _traces(f)[0]
    assert found.pending is None and found.fast                    # the hot path from now on


def test_never_generates_no_code_and_always_compiles_at_once(builds):
    files = _generated_files()
    x = np.array([0.5, -2.0, 3.0])
    with neuronika.config(compile="never"):
        f = neuronika.value_and_grad(lambda x: (x ** 3).sum())
        for _ in range(4):
            f(x)
        neuronika.hvp(lambda x: (nnp.sin(x) * x).sum(), x, np.ones(3))
        neuronika.hessian(lambda x: (nnp.exp(x) * x).sum())(x)
        neuronika.vjp(lambda x: x * x, x)[1](np.ones(3))
    assert builds.count == 0 and _generated_files() == files
    assert isinstance(_traces(f)[0].program, interpret.Plan)
    with neuronika.config(compile="always"):
        g = neuronika.grad(lambda x: (x ** 4).sum())
        g(x)
        assert builds.count == 1 and not isinstance(_traces(g)[0].program, interpret.Plan)
        f(x)                                  # the interpreted trace compiles on its next run
        assert builds.count == 2 and _traces(f)[0].pending is None


def _functional_results(mode):
    """Results of every functional entry point under a compile mode, each called twice (in
    "auto" the first call is interpreted, the second compiled)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(6)
    w = rng.standard_normal((6, 4))
    v = rng.standard_normal(6)

    def loss(x, w):
        h = nnp.tanh(x @ w)
        return (h * h).sum() + nnp.log1p(nnp.exp(x[2:5])).sum()

    def vector(x):
        return nnp.sin(x[::2]) * x[1::2]

    out = []
    with neuronika.config(compile=mode):
        for _ in range(2):
            out.append(neuronika.grad(loss)(x, w))
            out.append(neuronika.grad(loss, argnums=(0, 1))(x, w))
            value, grads = neuronika.value_and_grad(loss, argnums=1)(x, w)
            out += [value, grads]
            value, pullback = neuronika.vjp(vector, x)
            out += [value, pullback(np.arange(3.0))]
            out.append(neuronika.jacobian(vector)(x))
            out.append(neuronika.hessian(lambda x: loss(x, w))(x))
            out.append(neuronika.hvp(lambda x: loss(x, w), x, v))
            out.append(neuronika.grad(neuronika.grad(lambda x: (x ** 3 * nnp.cos(x)).sum()))(0.7))
    return out


def _flat_arrays(obj):
    if isinstance(obj, (tuple, list)):
        return [a for o in obj for a in _flat_arrays(o)]
    return [obj]


def test_every_functional_entry_point_gives_the_same_bits_in_every_mode():
    runs = {}
    for mode in ("never", "always", "auto"):
        transform.cache_clear()
        run.forget_interpreted()
        runs[mode] = _flat_arrays(_functional_results(mode))
    assert len(runs["never"]) == len(runs["always"]) == len(runs["auto"])
    for k, (a, b, c) in enumerate(zip(runs["never"], runs["always"], runs["auto"])):
        assert_same(a, b, f"result {k}: never vs always")
        assert_same(c, b, f"result {k}: auto vs always")


def test_guarded_branches_retrace_the_same_way_interpreted(builds):
    def f(x):
        if x.sum() > 0:                         # read from the data: checked by the plan / program
            return (x * x).sum()
        return (nnp.exp(x)).sum()

    results = {}
    for mode in ("never", "always"):
        transform.cache_clear()
        g = neuronika.grad(f)
        with neuronika.config(compile=mode):
            results[mode] = [g(np.array([1.0, 2.0])), g(np.array([-1.0, -2.0])), g(np.array([3.0, 1.0]))]
        assert g.stats.traced == 2 and len(_traces(g)) == 2
    for a, b in zip(results["never"], results["always"]):
        assert_same(a, b)


def test_values_read_from_int_arguments_are_checked_before_an_interpreted_run(builds):
    data = np.arange(40.0).reshape(10, 4)

    def objective(w, i):
        rows = slice((i % 5) * 2, (i % 5) * 2 + 2)       # computed from an int: checked first
        return ((data[rows] @ w) ** 2).sum()

    w = np.linspace(0.1, 0.4, 4)
    want = [2 * data[(i % 5) * 2:(i % 5) * 2 + 2].T @ (data[(i % 5) * 2:(i % 5) * 2 + 2] @ w) for i in range(12)]
    g = neuronika.grad(objective)
    for i in range(12):
        np.testing.assert_allclose(g(w, i), want[i], rtol=1e-13)
    assert g.stats.traced == 5
    assert builds.count == 2                        # the program and its check, shared by the traces
    assert all(t.pending is None for t in _traces(g))


def test_custom_vjp_is_interpreted_with_the_same_bits():
    @neuronika.custom_vjp
    def softplus(x):
        return np.logaddexp(0, x)

    softplus.defvjp(lambda x: (np.logaddexp(0, x), x), lambda x, g: (g / (1 + np.exp(-x)),))
    x = np.array([-3.0, 0.0, 0.25, 40.0])
    got = {}
    for mode in ("never", "always"):
        transform.cache_clear()
        with neuronika.config(compile=mode):
            got[mode] = neuronika.value_and_grad(lambda x: (softplus(x) * x).sum())(x)
    assert_same(got["never"][0], got["always"][0])
    assert_same(got["never"][1], got["always"][1])
    bad = neuronika.custom_vjp(lambda x: x * 2)
    bad.defvjp(lambda x: (x * 2, None), lambda r, g: (np.ones(7),))
    messages = []
    for mode in ("never", "always"):
        transform.cache_clear()
        with neuronika.config(compile=mode), pytest.raises(neuronika.GradientError) as info:
            neuronika.grad(lambda x: bad(x).sum())(x)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "shape (7,)" in messages[0]


@pytest.mark.parametrize("mode", ["never", "always"])
def test_detect_anomaly_in_grad_names_the_op_and_the_users_line(mode):
    with neuronika.config(compile=mode), neuronika.detect_anomaly(), np.errstate(all="ignore"):
        with pytest.raises(neuronika.AnomalyError) as info:
            neuronika.grad(lambda x: nnp.log(x - 2.0).sum())(np.ones(3))
        with pytest.raises(neuronika.AnomalyError) as back:
            neuronika.vjp(lambda x: nnp.sqrt(x), np.array([0.0, 1.0]))[1](np.ones(2))
    assert "op log produced NaN or Inf in its output (forward pass)" in str(info.value)
    assert "test_interpret.py" in str(info.value)
    assert "op sqrt" in str(back.value) and "backward pass" in str(back.value)


def test_source_of_an_interpreted_trace_compiles_it_on_request(builds):
    f = neuronika.grad(lambda x: (x * x).sum())
    x = np.ones(3)
    f(x)
    assert builds.count == 0
    text = f.source(x)
    assert "def " in text and builds.count == 1
    assert_same(f(x), 2 * x)
    assert builds.count == 1 and _traces(f)[0].fast


def test_a_pending_trace_keeps_no_argument_array():
    import gc
    import weakref
    f = neuronika.grad(lambda x: (x * 3.0).sum())
    x = np.ones(1000)
    ref = weakref.ref(x)
    f(x)
    del x
    gc.collect()
    assert ref() is None and _traces(f)[0].pending is not None


def test_the_functional_compile_mode_is_local_to_a_thread_and_a_context(builds):
    seen = []

    def call():
        f = neuronika.grad(lambda x: (x * 5.0).sum())
        f(np.ones(2))
        seen.append(isinstance(_traces(f)[0].program, interpret.Plan))

    with neuronika.config(compile="always"):
        thread = threading.Thread(target=call)       # the default ("auto") in another thread
        thread.start()
        thread.join()
        contextvars.copy_context().run(lambda: (neuronika.config(compile="never"), call()))
        call()
    assert seen == [True, True, False]
    assert neuronika.config().compile == "auto"


def test_a_nested_trace_of_arrays_runs_interpreted_and_compiles_when_it_repeats(builds):
    inner = neuronika.grad(lambda c: (c ** 2).sum())
    const = np.array([1.0, 2.0])

    def outer(x):
        return (x * inner(const)).sum()         # a trace inside a trace, over constants only

    g = neuronika.grad(outer)
    for k in range(3):
        assert_same(g(np.array([0.5, 0.25]) + k), 2 * const)
    assert builds.count >= 1


def test_threads_promote_traces_while_others_run_them():
    """A trace compiled by one thread while another runs its plan: each call's forward and
    backward come from one program (a vjp's pullback keeps the one that saved its values)."""
    x = np.linspace(-1.0, 1.0, 7)

    def f(x):
        return nnp.tanh(x) * x + nnp.sin(x * 3.0)

    with neuronika.config(compile="always"):
        want_value, pullback = neuronika.vjp(f, x)
        want_grad = pullback(np.ones(7))[0]
        want_g = neuronika.grad(lambda x: f(x).sum())(x)
    transform.cache_clear()
    errors = []
    barrier = threading.Barrier(6)

    def work():
        try:
            barrier.wait()
            for _ in range(25):
                value, pullback = neuronika.vjp(f, x)
                assert_same(value, want_value)
                assert_same(pullback(np.ones(7))[0], want_grad)
                assert_same(neuronika.grad(lambda x: f(x).sum())(x), want_g)
        except BaseException as error:           # noqa: BLE001 - reported below
            errors.append(error)

    with neuronika.config(compile_after=3):
        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[0]


def test_explain_and_the_retrace_warning_see_interpreted_traces_as_traces():
    f = neuronika.grad(lambda x, n: (x ** 2).sum() * float(n))
    x = np.ones(3)
    f(x, 1)
    assert "hits the cache" in transform.explain(f, x, 1)
    assert "would be traced" in transform.explain(f, x, 2)
    f(x, 2)
    assert f.stats.traced == 2


# ---- template families: nodes that differ only in integer literals share one function -----

def test_an_unrolled_loop_makes_a_function_per_op_not_per_step(monkeypatch):
    from neuronika.transform import loops
    monkeypatch.setattr(loops, "AUTO", False)       # the loop left unrolled: straight-line plans
    made = []
    real = interpret._compile
    monkeypatch.setattr(interpret, "_compile", lambda *a, **k: made.append(a[3]) or real(*a, **k))
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((60, 2, 3))
    wx, wh = rng.standard_normal((3, 4)), rng.standard_normal((4, 4))

    def rnn(wx, wh, xs):
        h = nnp.tanh(xs[0] @ wx)
        for t in range(1, xs.shape[0]):
            h = nnp.tanh(xs[t] @ wx + h @ wh)
        return (h * h).sum()

    with neuronika.config(compile="never"):
        got = neuronika.value_and_grad(rnn, argnums=(0, 1))(wx, wh, xs)
    assert 0 < len(made) < 20, made                      # not one per step (60 steps)
    transform.cache_clear()
    with neuronika.config(compile="always"):
        want = neuronika.value_and_grad(rnn, argnums=(0, 1))(wx, wh, xs)
    for a, b in zip(_flat_arrays(got), _flat_arrays(want)):
        assert_same(a, b)


def test_a_family_function_is_used_only_where_it_writes_the_members_code():
    import gast
    family = gast.parse("y = a0[__nkL0__] * 2").body
    assert interpret._same_list(family, gast.parse("y = a0[3] * 2").body, ["3"])
    assert not interpret._same_list(family, gast.parse("y = a0[4] * 2").body, ["3"])
    assert not interpret._same_list(family, gast.parse("y = a0[3.0] * 2").body, ["3"])
    assert not interpret._same_list(family, gast.parse("y = a0[3] * 3").body, ["3"])


def test_members_of_a_family_give_their_own_results_bit_for_bit():
    x = neuronika.from_ndarray(np.arange(24.0).reshape(6, 4)).requires_grad()
    parts = [x[k] * (k + 1.5) for k in range(6)] + [x[:, k].sum() * 2.0 for k in range(4)]
    results = {}
    for mode in ("never", "always"):
        transform.cache_clear()
        x.grad = None
        with neuronika.config(compile=mode):
            loss = nnp.concatenate([nnp.ravel(p) for p in parts]).sum()
            loss.backward()
            results[mode] = (np.array(loss.data), np.array(x.grad))
    assert_same(results["never"][0], results["always"][0])
    assert_same(results["never"][1], results["always"][1])


def test_a_graph_large_enough_to_roll_gives_the_same_bits_on_its_first_and_later_calls():
    """The first call (interpreted) and the compiled ones agree whatever the engine does with
    an unrolled recurrence (``transform.loops`` may run it as a loop: both paths do)."""
    rng = np.random.default_rng(8)
    xs = rng.standard_normal((220, 2, 3))
    wx, wh, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 4)) * 0.3, rng.standard_normal(4)

    def rnn(wx, wh, b, xs):
        h = nnp.tanh(xs[0] @ wx + b)
        for t in range(1, xs.shape[0]):
            h = nnp.tanh(xs[t] @ wx + h @ wh + b)
        return (h * h).sum()

    f = neuronika.value_and_grad(rnn, argnums=(0, 1, 2))
    first = _flat_arrays(f(wx, wh, b, xs))
    assert isinstance(_traces(f)[0].program, interpret.Plan)
    for _ in range(2):
        again = _flat_arrays(f(wx, wh, b, xs))
        for a, c in zip(first, again):
            assert_same(a, c)
    assert _traces(f)[0].pending is None
