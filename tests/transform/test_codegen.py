"""What the generated code must (and must not) do."""
import re
import traceback

import numpy as np
import pytest

import neuronika


def split_source(var):
    forward, _, backward = var.source().partition("\ndef backward")
    return forward, "def backward" + backward


def test_tiny_reads_like_the_design_example():
    x = neuronika.rand((4, 8))
    w = neuronika.rand((8, 8)).requires_grad()
    b = neuronika.rand(8).requires_grad()
    assert (x.mm(w) + b).tanh().sum().source() == (
        "def forward(x0, p1, p2):\n"
        "    v3 = xp.dot(x0, p1)\n"
        "    v4 = v3 + p2\n"
        "    del v3\n"
        "    v5 = xp.tanh(v4)\n"
        "    del v4\n"
        "    v6 = xp.sum(v5)\n"
        "    return v6, (v5, x0)\n"
        "\n"
        "def backward(seed, v5, x0):\n"
        "    g4 = seed * (1 - v5 * v5)\n"
        "    g2 = xp.sum(g4, axis=0)\n"
        "    g1 = xp.dot(x0.T, g4)\n"
        "    del g4\n"
        "    return g1, g2\n")


def test_no_adjoint_for_branches_without_differentiable_leaves():
    x = neuronika.rand((3, 4))
    w = neuronika.rand((3, 4)).requires_grad()
    _, backward = split_source((x.exp().sin() * w).sum())
    assert "cos" not in backward and "exp" not in backward
    assert re.findall(r"^def backward\(seed, (.*)\):", backward, re.M) == ["v3"]


def test_first_contribution_assigned_later_ones_added_in_place_into_own_buffers():
    w = neuronika.rand(5).requires_grad()
    loss = (w * w.exp() + w.tanh()).sum()
    _, backward = split_source(loss)
    assert "+=" in backward
    for line in backward.splitlines():
        if "+=" in line:
            target = line.split("+=")[0].strip()
            assert target != "seed"
            assert re.search(rf"^\s*{target} = .*[*/@-]", backward, re.M), (target, backward)
    loss.backward()
    wd = w.data
    np.testing.assert_allclose(w.grad, np.exp(wd) * (1 + wd) + 1 - np.tanh(wd) ** 2, rtol=1e-5)


def test_pass_through_gradients_are_never_added_to_in_place():
    w = neuronika.rand(3).requires_grad()
    loss = w + w + w
    _, backward = split_source(loss)
    assert "seed +=" not in backward
    seed = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    loss.backward(seed)
    np.testing.assert_array_equal(w.grad, 3 * seed)
    np.testing.assert_array_equal(seed, [1.0, 2.0, 3.0])


def test_unbroadcast_only_where_shapes_differ():
    a = neuronika.rand((4, 3)).requires_grad()
    same = neuronika.rand((4, 3)).requires_grad()
    row = neuronika.rand(3).requires_grad()
    _, backward = split_source((a * same).sum())
    assert "sum(" not in backward
    _, backward = split_source((a * row).tanh().sum())
    assert backward.count(", axis=0)") == 1


def test_forward_keeps_only_values_an_adjoint_reads():
    x = neuronika.rand((2, 3))
    w = neuronika.rand((3, 3)).requires_grad()
    loss = (x.mm(w).exp() + 1).relu().sum()
    forward, backward = split_source(loss)
    saved = re.search(r"return v\d+, \((.*)\)", forward).group(1)
    args = re.search(r"def backward\(seed, (.*)\)", backward).group(1)
    assert saved.rstrip(",") == args
    # relu reads its input, exp its output, mm (for w) reads x: three values, no more.
    assert len(args.split(", ")) == 3


def test_scalar_seed_stays_implicit_for_scalar_roots():
    w = neuronika.rand((3, 4)).requires_grad()
    _, backward = split_source((w * 2).sum())
    assert "broadcast_to" not in backward and "ones" not in backward


def test_traceback_shows_the_generated_line():
    x = neuronika.from_ndarray(np.array([0.0, 1.0]))
    y = x.ln() * 2
    with np.errstate(divide="raise"):
        with pytest.raises(FloatingPointError) as info:
            y.forward()
    text = "".join(traceback.format_exception(info.value))
    assert "<neuronika forward" in text
    assert "v1 = xp.log(x0)" in text


def test_detect_anomaly_names_the_op_and_the_line_in_forward():
    x = neuronika.from_ndarray(np.array([1.0, -1.0])).requires_grad()
    with neuronika.detect_anomaly():
        y = (x * 2).ln().sum()
        with np.errstate(invalid="ignore"), pytest.raises(neuronika.AnomalyError) as info:
            y.forward()
    message = str(info.value)
    assert "op log" in message and "forward" in message
    assert "test_codegen.py" in message


def test_detect_anomaly_names_the_op_in_backward():
    x = neuronika.from_ndarray(np.array([0.0, 4.0])).requires_grad()
    with neuronika.detect_anomaly():
        y = x.sqrt().sum()
        y.forward()
        with np.errstate(divide="ignore"), pytest.raises(neuronika.AnomalyError) as info:
            y.backward()
    assert "op sqrt" in str(info.value) and "backward" in str(info.value)


def test_without_anomaly_mode_generated_code_has_no_checks():
    x = neuronika.from_ndarray(np.array([1.0, -1.0])).requires_grad()
    y = x.ln().sum()
    assert "check_finite" not in y.source()
    with np.errstate(invalid="ignore"):
        y.forward()
    assert np.isnan(y.item())
    with neuronika.detect_anomaly():
        assert "check_finite" in y.source()


def test_declare_refuses_reserved_input_names():
    from neuronika.ops import declare
    with pytest.raises(ValueError, match="reserved"):
        declare("uses_y_as_input", ("x", "y"), "x + y", {"x": "dy", "y": "dy"})


# ---- long programs: helpers of bounded size, linear code generation ------------------------------

import gc  # noqa: E402
import linecache  # noqa: E402
import time  # noqa: E402
import weakref  # noqa: E402

import gast  # noqa: E402

import neuronika.numpy as nnp  # noqa: E402
from neuronika import transform  # noqa: E402
from neuronika.graph import linearize  # noqa: E402
from neuronika.ops import OPS  # noqa: E402
from neuronika.transform import codegen, loops, templates  # noqa: E402


@pytest.fixture(autouse=True)
def compiled():
    """Compile on the first run (where first runs are otherwise interpreted), from cold caches."""
    config = getattr(neuronika, "config", None)
    transform.cache_clear()
    codegen.patterns_clear()
    if config is None:
        yield
    else:
        with config(compile="always"):
            yield
    transform.cache_clear()


def split_everything(monkeypatch):
    """Every program longer than 4 statements becomes helpers of at most 3."""
    transform.cache_clear()
    codegen.patterns_clear()
    monkeypatch.setattr(codegen, "CHUNK", 3)
    monkeypatch.setattr(codegen, "LONG", 4)


def functions_in(source):
    return re.findall(r"^def (\w+)\(", source, re.M)


def imperative_model(x_data, w_data, b_data):
    """Broadcasting, a matmul, an index, a reduction over an axis, a retained gradient,
    a Python float and a value used twice."""
    x = neuronika.from_ndarray(x_data)
    w = neuronika.from_ndarray(w_data).requires_grad()
    b = neuronika.from_ndarray(b_data).requires_grad()
    h = (x.mm(w) + b).tanh()
    h.retain_grad()
    z = (h * h * 0.5 + h[1:] .sum(0) - b).exp()
    loss = (z.sum(1) * h.sum(1)).sum()
    loss.backward()
    return [loss.data, w.grad, b.grad, h.grad]


def test_long_programs_become_helpers_with_the_same_results(monkeypatch):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    whole = imperative_model(*data)
    split_everything(monkeypatch)
    parts = imperative_model(*data)
    for a, b in zip(whole, parts):
        np.testing.assert_array_equal(a, b)          # the same NumPy calls: the same bits
    x = neuronika.from_ndarray(data[0])
    w = neuronika.from_ndarray(data[1]).requires_grad()
    source = ((((x.mm(w).tanh() * 2.0).exp() - 1).sin() * w.sum(0)).cos() * 3).sum().source()
    names = functions_in(source)
    assert names[0] == "forward" and "forward_part2" in names and "backward_part2" in names
    assert "def forward(*a):" in source and "def backward(*a):" in source
    compile(source, "<source>", "exec")              # .source shows every function, whole


def traced_model(w, b, x, scale, c):
    h = nnp.tanh(x @ w + b) * scale
    if float(c) > 0:                                  # a guarded Python-level read
        h = h + nnp.sin(h)
    aux = h.sum(0)
    return (h * h).sum() + nnp.exp(b).sum(), aux


def test_traced_functions_split_into_helpers_give_the_same_results(monkeypatch):
    rng = np.random.default_rng(1)
    args = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((6, 3)), 0.5
    c = np.array(1.0)
    vg = neuronika.value_and_grad(traced_model, argnums=(0, 1), has_aux=True)
    (whole_value, whole_aux), whole_grads = vg(*args, c)
    whole_negative = vg(*args, -c)
    whole_hvp = neuronika.hvp(lambda w: traced_model(w, *args[1:], c)[0], args[0], np.ones((3, 4)))
    split_everything(monkeypatch)
    vg = neuronika.value_and_grad(traced_model, argnums=(0, 1), has_aux=True)
    (value, aux), grads = vg(*args, c)
    negative = vg(*args, -c)                          # the guard fails: traced again, in helpers too
    hvp = neuronika.hvp(lambda w: traced_model(w, *args[1:], c)[0], args[0], np.ones((3, 4)))
    np.testing.assert_array_equal(value, whole_value)
    np.testing.assert_array_equal(aux, whole_aux)
    for a, b in zip(grads + negative[1], whole_grads + whole_negative[1]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(negative[0][0], whole_negative[0][0])
    np.testing.assert_array_equal(hvp, whole_hvp)
    assert "program_part2" in vg.source(*args, c)


def test_custom_vjp_functions_are_globals_of_the_helpers(monkeypatch):
    @neuronika.custom_vjp
    def softplus(x):
        return np.logaddexp(0, x)

    softplus.defvjp(lambda x: (np.logaddexp(0, x), x), lambda x, g: (g / (1 + np.exp(-x)),))

    def f(x):
        return (softplus(x * 2.0) * x).sum()

    x = np.linspace(-2, 2, 5)
    whole = neuronika.value_and_grad(f)(x)
    split_everything(monkeypatch)
    parts = neuronika.value_and_grad(f)(x)
    np.testing.assert_array_equal(whole[0], parts[0])
    np.testing.assert_array_equal(whole[1], parts[1])


def test_a_traceback_in_a_helper_shows_its_generated_line(monkeypatch):
    split_everything(monkeypatch)
    x = neuronika.from_ndarray(np.array([1.0, 2.0]))
    y = ((x * 2 + 1) * 3 - 9).ln() * 2 + 1
    with np.errstate(divide="raise"):
        with pytest.raises(FloatingPointError) as info:
            y.forward()
    frame = info.traceback[-1]
    assert "_part" in frame.name
    line = linecache.getline(str(frame.path), frame.lineno + 1)
    assert re.match(r"\s+v\d+ = xp\.log\(v\d+\)", line), line
    assert "v9 = xp.log(v8)" in "".join(traceback.format_exception(info.value))


def test_anomaly_in_a_helper_names_the_op(monkeypatch):
    split_everything(monkeypatch)
    x = neuronika.from_ndarray(np.array([1.0, -1.0])).requires_grad()
    with neuronika.detect_anomaly():
        y = ((x * 2 + 1) * 3).ln().sum()
        with np.errstate(invalid="ignore"), pytest.raises(neuronika.AnomalyError, match="op log"):
            y.forward()


def test_a_program_of_helpers_is_freed_at_once(monkeypatch):
    split_everything(monkeypatch)
    x = neuronika.from_ndarray(np.ones(3)).requires_grad()
    y = ((((x * 2).tanh() * 3).exp() * x).sin() * x).sum()
    order, leaves, _ = linearize(y._node)
    program = codegen.build(order, leaves)
    value, saved = program.forward(*[leaf.value for leaf in leaves])
    assert np.isclose(value, 3 * np.sin(np.exp(3 * np.tanh(2.0))))
    files = list(program.filenames)
    assert len(functions_in(program.source())) > 5 and all(f in linecache.cache for f in files)
    ref = weakref.ref(program)
    collecting = gc.isenabled()
    gc.disable()
    try:
        del program, saved
        assert ref() is None                         # no reference cycle through helpers' globals
    finally:
        if collecting:
            gc.enable()
    assert not any(f in linecache.cache for f in files)


def test_code_generation_leaves_the_collector_as_it_found_it(monkeypatch):
    x = neuronika.from_ndarray(np.ones(3)).requires_grad()
    order, leaves, _ = linearize((x * 2).sum()._node)
    assert gc.isenabled()
    codegen.build(order, leaves)
    assert gc.isenabled()
    gc.disable()
    try:
        codegen.build(order, leaves)
        assert not gc.isenabled()
    finally:
        gc.enable()

    def fails(*args):
        assert not gc.isenabled()
        raise RuntimeError("no")

    monkeypatch.setattr(codegen, "_build", fails)
    with pytest.raises(RuntimeError):
        codegen.build(order, leaves)
    assert gc.isenabled()


def chain(F, v, n):
    y = v
    for k in range(n):
        kind = k % 4
        y = y * 1.01 if kind == 0 else F.tanh(y) if kind == 1 else y + 0.1 if kind == 2 else F.sin(y)
    return F.sum(y)


def rnn(F, wx, wh, b, xs):
    h = F.tanh(xs[0] @ wx + b)
    for t in range(1, xs.shape[0]):
        h = F.tanh(xs[t] @ wx + h @ wh + b)
    return F.sum(h * h)


def chain_reference(v, n, change_at=None):
    """The chain and its gradient in NumPy (the factor at step ``change_at`` 1.02, not 1.01)."""
    ys = [v]
    factors = [1.02 if k == change_at else 1.01 for k in range(n)]
    for k in range(n):
        y, kind = ys[-1], k % 4
        ys.append(y * factors[k] if kind == 0 else np.tanh(y) if kind == 1 else y + 0.1 if kind == 2
                  else np.sin(y))
    g = np.ones_like(v)
    for k in range(n - 1, -1, -1):
        y, kind = ys[k], k % 4
        g = g * (factors[k] if kind == 0 else 1 - np.tanh(y) ** 2 if kind == 1 else 1.0 if kind == 2
                 else np.cos(y))
    return ys[-1].sum(), g


def bounded(source):
    """Every function of a program is short."""
    lengths = [len(f.splitlines()) for f in source.split("\n\ndef ")]
    assert max(lengths) < 3 * codegen.CHUNK, max(lengths)
    return len(lengths)


def test_a_20k_node_chain_goes_through_every_pass(monkeypatch):
    monkeypatch.setattr(loops, "AUTO", False)       # straight-line code, in chunks
    v_data = np.random.default_rng(2).standard_normal(8)
    n = 13_334                                       # ops; with the constants, 20,000 nodes
    value, grad = chain_reference(v_data, n)
    start = time.perf_counter()
    v = neuronika.from_ndarray(v_data).requires_grad()
    loss = chain(nnp, v, n)
    assert len(linearize(loss._node)[0]) >= 20_000
    loss.backward()
    np.testing.assert_allclose(loss.data, value, rtol=1e-12)
    np.testing.assert_allclose(v.grad, grad, rtol=1e-10)
    assert bounded(loss.source()) > 20
    g = neuronika.value_and_grad(lambda v: chain(nnp, v, n))
    traced_value, traced_grad = g(v_data)
    np.testing.assert_array_equal(traced_value, loss.data)
    np.testing.assert_array_equal(traced_grad, v.grad)
    assert bounded(g.source(v_data)) > 20
    # linear code generation: seconds (before, a minute for the traced function alone)
    assert time.perf_counter() - start < 30


def test_a_20k_node_chain_rolled_into_a_loop():
    v_data = np.random.default_rng(2).standard_normal(8)
    n = 13_334
    value, grad = chain_reference(v_data, n)
    start = time.perf_counter()
    v = neuronika.from_ndarray(v_data).requires_grad()
    loss = chain(nnp, v, n)
    loss.backward()
    np.testing.assert_allclose(loss.data, value, rtol=1e-12)
    np.testing.assert_allclose(v.grad, grad, rtol=1e-10)
    # imperatively, the numbers written at every step (1.01, 0.1) are one leaf each, checked
    # unchanged on every reuse; a trace folds them as constants
    source = loss.source()
    assert ".program(" in source and bounded(source) < 10
    loss = chain(nnp, v, n)              # the same graph again: the same program
    loss.backward()
    np.testing.assert_allclose(v.grad, 2 * grad, rtol=1e-10)
    assert loss.source() == source
    with neuronika.no_grad():            # another number at one step: not the same graph
        v.grad = None
    y = v
    for k in range(n):
        kind = k % 4
        y = y * (1.02 if k == 8 else 1.01) if kind == 0 else nnp.tanh(y) if kind == 1 \
            else y + 0.1 if kind == 2 else nnp.sin(y)
    loss = nnp.sum(y)
    loss.backward()
    expected = chain_reference(v_data, n, change_at=8)
    np.testing.assert_allclose(loss.data, expected[0], rtol=1e-12)
    np.testing.assert_allclose(v.grad, expected[1], rtol=1e-10)
    g = neuronika.value_and_grad(lambda v: chain(nnp, v, n))
    traced_value, traced_grad = g(v_data)
    np.testing.assert_allclose(traced_value, value, rtol=1e-12)
    np.testing.assert_allclose(traced_grad, grad, rtol=1e-10)
    source = g.source(v_data)
    assert ".program(" in source and bounded(source) < 10
    assert time.perf_counter() - start < 30


def test_a_10k_step_recurrence_goes_through_every_pass(monkeypatch, rolled=False):
    monkeypatch.setattr(loops, "AUTO", rolled)
    rng = np.random.default_rng(3)
    steps = 10_000
    wx, wh = rng.standard_normal((4, 8)) / 2, rng.standard_normal((8, 8)) / 3
    b, xs = 0.1 * rng.standard_normal(8), rng.standard_normal((steps, 2, 4))
    start = time.perf_counter()
    g = neuronika.value_and_grad(lambda wx, wh, b, xs: rnn(nnp, wx, wh, b, xs), argnums=(0, 1, 2))
    value, (gwx, gwh, gb) = g(wx, wh, b, xs)
    elapsed = time.perf_counter() - start
    hs = [np.tanh(xs[0] @ wx + b)]
    for t in range(1, steps):
        hs.append(np.tanh(xs[t] @ wx + hs[-1] @ wh + b))
    np.testing.assert_allclose(value, (hs[-1] ** 2).sum(), rtol=1e-12)
    dh, rwx, rwh, rb = 2 * hs[-1], 0, 0, 0
    for t in range(steps - 1, -1, -1):
        da = dh * (1 - hs[t] ** 2)
        rwx, rb = rwx + xs[t].T @ da, rb + da.sum(0)
        if t:
            rwh, dh = rwh + hs[t - 1].T @ da, da @ wh.T
    for got, want in ((gwx, rwx), (gwh, rwh), (gb, rb)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    source = g.source(wx, wh, b, xs)
    if rolled:
        assert ".program(" in source and bounded(source) < 10
        assert elapsed < 10, elapsed
    else:
        assert bounded(source) > 50
        assert elapsed < 60, elapsed                 # before: many minutes


def test_a_10k_step_recurrence_rolled_into_a_loop(monkeypatch):
    test_a_10k_step_recurrence_goes_through_every_pass(monkeypatch, rolled=True)


def test_templates_that_differ_in_integers_share_one_family(monkeypatch):
    monkeypatch.setattr(loops, "AUTO", False)       # straight-line code: a template per step
    xs = np.random.default_rng(4).standard_normal((40, 3))

    def f(xs):
        return sum(nnp.sin(xs[t]) * t for t in range(40)).sum()

    with_families = neuronika.grad(f).source(xs)
    assert codegen._FAMILIES and all(v is not None for v in codegen._FAMILIES.values())
    transform.cache_clear()
    codegen.patterns_clear()
    real = codegen._literals
    codegen._literals = lambda src: (src, [])        # every node its own pattern
    try:
        without = neuronika.grad(f).source(xs)
    finally:
        codegen._literals = real
    assert with_families == without
    assert re.search(r"= p0\[3(, \.\.\.)?\]\n", with_families) and re.search(r"\[38(, \.\.\.)?\] \+= g", with_families)


def test_a_family_that_renders_differently_is_never_used():
    def pattern(src):
        p = codegen._ForwardPattern()
        p.forms = [codegen._Form(s) for s in gast.parse(src).body]
        p.locals, p.functions = [], []
        return p

    key = ("test", "family")
    codegen._FAMILIES.pop(key, None)
    member = pattern("__nk0__ = __nk2__[(5)]")
    found = codegen._family(key, ["5"], lambda: pattern("__nk0__ = __nk2__[__nkL0__] + 1"), lambda: member)
    assert found is member and codegen._FAMILIES[key] is None
    again = codegen._family(key, ["6"], lambda: 1 / 0, lambda: pattern("__nk0__ = __nk2__[6]"))
    assert again.forms[0].fill(["v1", "", "x0"]).text == "v1 = x0[6]"
    good = ("test", "good")
    codegen._family(good, ["5"], lambda: pattern("__nk0__ = __nk2__[__nkL0__]"),
                    lambda: pattern("__nk0__ = __nk2__[5]"))
    bound = codegen._family(good, ["7"], lambda: 1 / 0, lambda: 1 / 0)
    assert bound.forms[0].fill(["v1", "", "x0"]).text == "v1 = x0[7]"
    codegen.patterns_clear()


def test_warm_patterns_write_the_same_code_as_cold_ones():
    rng = np.random.default_rng(5)
    data = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    x, w, b = (neuronika.from_ndarray(d) for d in data)
    w, b = w.requires_grad(), b.requires_grad()
    cold = ((x.mm(w) + b).tanh() * (x.mm(w) + b).sigmoid()).sum(0).mean().source()
    transform.cache_clear()
    warm = ((x.mm(w) + b).tanh() * (x.mm(w) + b).sigmoid()).sum(0).mean().source()
    assert cold == warm


def test_templates_parse_as_gast_parses_them():
    sources = set()
    for op in OPS.values():
        for spec in [op.forward, *op.grads.values(), *op.accumulate.values()]:
            src = getattr(spec, "src", spec)
            if isinstance(src, str):
                sources.add(src)
    assert len(sources) > 100
    for src in sources:
        import textwrap
        expected = gast.parse(textwrap.dedent(src).strip()).body
        assert gast.dump(gast.Module(templates.Template(src).body, [])) == \
            gast.dump(gast.Module(expected, [])), src
        assert ast_equal(templates.to_ast(templates.Template(src).body[0]),
                         gast.gast_to_ast(expected[0]))


def ast_equal(a, b):
    import ast
    return ast.dump(a) == ast.dump(b)


def test_instantiated_templates_share_no_node_with_the_template():
    template = templates.parse("t = x * 2\ny = t + xp.sin(x)")
    bindings = {"x": gast.Name("v1", gast.Load(), None, None)}
    first, used = templates.instantiate(template, bindings, "p_", "y", "v2", "op test")
    second, _ = templates.instantiate(template, bindings, "p_", "y", "v2", "op test")
    assert used == {"x"}
    for node in gast.walk(gast.Module(first, [])):
        if isinstance(node, gast.Name):
            node.id = "changed"
    assert gast.dump(gast.Module(second, [])) != gast.dump(gast.Module(first, []))
    assert "changed" not in gast.dump(gast.Module(template.body, []))
    assert bindings["x"].id == "v1"


def test_overlapping_pauses_in_two_threads_leave_the_collector_on():
    """The interleaving that used to leave the collector off for good: thread A pauses it,
    thread B starts a pause while it is off, A finishes, then B finishes. Every place that
    pauses the collector (tracing, symbolic gradients, families, code generation, large
    linearisations) goes through ``graph.collector_paused``."""
    import threading
    from neuronika.graph import collector_paused
    assert gc.isenabled()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def a():
        with collector_paused:
            a_in.set()
            b_in.wait()
        a_out.set()

    def b():
        a_in.wait()
        with collector_paused:
            b_in.set()
            a_out.wait()
            seen.append(gc.isenabled())        # B's work still runs with the collector off

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [False]
    assert gc.isenabled()
    gc.disable()                                # a collector the user switched off stays off
    try:
        with collector_paused:
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_is_paused_only_through_one_place():
    import pathlib
    root = pathlib.Path(neuronika.__file__).parent
    found = [str(p.relative_to(root)) for p in root.rglob("*.py") if "gc.disable()" in p.read_text()]
    assert found == ["graph.py"], found


@pytest.mark.parametrize("name", ["sum", "prod", "max", "min"])
def test_numpy_programs_reductions_are_the_array_methods_calls(name):
    """``xp.sum`` / ``prod`` / ``max`` / ``min`` of NumPy programs call the ufuncs' reductions
    directly (``backend._sum``, ...): the same results as the array methods, bit for bit and
    type for type, for every dtype, axis, keepdims, a 0-d array and a NumPy scalar, and the
    same error on an empty maximum."""
    from neuronika.backend import NUMPY_XP
    rng = np.random.default_rng(0)
    values = [rng.standard_normal((3, 4, 5)).astype(np.float32), rng.standard_normal((3, 4)),
              rng.integers(-5, 5, (4, 3)).astype(np.int8), rng.random((2, 3)) > 0.5,
              (rng.standard_normal((3, 2)) + 1j).astype(np.complex64), np.array(2.5), np.float32(1.5)]
    fn = getattr(NUMPY_XP, name)
    for v in values:
        axes = [None] + list(range(v.ndim)) + ([(0, v.ndim - 1)] if v.ndim > 1 else [])
        for axis in axes:
            for keepdims in (False, True):
                if name in ("max", "min") and v.dtype.kind == "c":
                    continue
                got = fn(v, axis=axis, keepdims=keepdims)
                want = getattr(v, name)(axis=axis, keepdims=keepdims)
                assert type(got) is type(want) and np.asarray(got).dtype == np.asarray(want).dtype
                np.testing.assert_array_equal(got, want)
                assert np.asarray(got).tobytes() == np.asarray(want).tobytes()
    if name in ("max", "min"):
        with pytest.raises(ValueError, match="zero-size array"):
            fn(np.zeros((0, 3)))
    else:                                   # an accumulator dtype
        v = values[2]
        np.testing.assert_array_equal(fn(v, axis=0, dtype=np.float64), getattr(v, name)(axis=0, dtype=np.float64))
        assert fn(v, axis=0, dtype=np.float64).dtype == np.float64
