"""transform.to_dot: a graph as Graphviz DOT text (node and edge counts, kinds, labels),
rendering through the graphviz package when present."""
import re
import sys
import types

import numpy as np
import pytest

import neuronika
from neuronika import nn
from neuronika.transform import dot, run, to_dot

NODE = re.compile(r"^  (n\d+) \[label=\"((?:[^\"\\]|\\.)*)\", (.*)\];$")
EDGE = re.compile(r"^  (n\d+) -> (n\d+)(?: \[label=(\d+)\])?;$")


def parse(text):
    """{id: (label, attributes)} and [(source, target, slot)] from ``to_dot``'s text."""
    lines = text.splitlines()
    assert lines[0].startswith("digraph ") and lines[0].endswith("{") and lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[3:-1]:
        node, edge = NODE.match(line), EDGE.match(line)
        assert node or edge, line
        if node:
            nodes[node.group(1)] = (node.group(2), node.group(3))
        else:
            edges.append((edge.group(1), edge.group(2), edge.group(3)))
    return nodes, edges


def test_a_small_graph_counts_its_nodes_edges_and_kinds():
    w = neuronika.ones((3, 2)).requires_grad()
    x = neuronika.ones((4, 3))
    y = (x.mm(w) + 1.0).tanh().sum()
    nodes, edges = parse(to_dot(y))
    assert len(nodes) == 7 and len(edges) == 6          # x, w, mm, 1.0, add, tanh, sum
    labels = {label.split("\\n")[0]: attrs for label, attrs in nodes.values()}
    assert set(labels) == {"parameter", "input", "matmul", "1.0", "add", "tanh", "sum [None, False]"}
    assert "#ffd27f" in labels["parameter"] and "#dddddd" in labels["input"]
    assert "plaintext" in labels["1.0"]
    assert "peripheries=2" in labels["sum [None, False]"]
    assert sum("peripheries=2" in attrs for _, attrs in nodes.values()) == 1
    by_label = {label.split("\\n")[0]: k for k, (label, _) in nodes.items()}
    assert (by_label["input"], by_label["matmul"], "0") in edges
    assert (by_label["parameter"], by_label["matmul"], "1") in edges
    assert (by_label["add"], by_label["tanh"], None) in edges
    assert any(label == "tanh\\n(4, 2) float32" for label, _ in nodes.values())


def test_a_repeated_operand_is_two_edges_and_a_shared_node_one_node():
    x = neuronika.from_ndarray(np.ones(5))
    h = x.exp()
    y = (h * h).sum() + h.sum()
    nodes, edges = parse(to_dot(y))
    assert len(nodes) == 6 and len(edges) == 7          # x, exp (once), mul, sum, sum, add
    assert sum(label.startswith("exp") for label, _ in nodes.values()) == 1
    assert all("float64" in label for label, _ in nodes.values())


def test_a_function_with_arguments_and_several_results():
    a, b = neuronika.ones((2, 2)).requires_grad(), neuronika.ones((2, 2))
    nodes, edges = parse(to_dot(lambda p, q: {"s": p + q, "t": [p * q]}, a, b))
    assert len(nodes) == 4 and len(edges) == 4
    assert sum("peripheries=2" in attrs for _, attrs in nodes.values()) == 2


def test_a_module_called_on_an_array_names_its_parameters():
    neuronika.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    nodes, edges = parse(to_dot(model, np.ones((5, 3), np.float32)))
    names = sorted(label.split("\\n")[0] for label, attrs in nodes.values() if "#ffd27f" in attrs)
    assert names == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert len(nodes) == 10 and len(edges) == 9


def test_a_constant_read_by_the_program_is_drawn_as_one(monkeypatch):
    monkeypatch.setattr(run, "CONSTANT_MIN_WORK", 0)
    x = neuronika.from_ndarray(np.linspace(-2, 2, 7).astype(np.float32))
    y = x.sin().exp()
    w = neuronika.ones(7).requires_grad()
    for _ in range(3):
        w.zero_grad()
        loss = (w * y).sum()
        loss.backward()
    nodes, edges = parse(to_dot(loss))
    kinds = sorted(label.split("\\n")[0] for label, _ in nodes.values())
    assert kinds == ["constant", "mul", "parameter", "sum [None, False]"] and len(edges) == 3
    assert any('style="dashed"' in attrs for _, attrs in nodes.values())


def test_drawing_computes_and_compiles_nothing():
    w = neuronika.ones(3).requires_grad()
    y = (w * 2.0).sum()
    before = neuronika.transform.cache_info()
    to_dot(y)
    assert y._node.value is None and neuronika.transform.cache_info() == before


def test_long_attributes_are_left_out_and_quotes_escaped():
    x = neuronika.from_ndarray(np.arange(12.0).reshape(3, 4))
    text = to_dot(x[np.array([0, 2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1])], name='my "graph"')
    assert text.startswith('digraph "my \\"graph\\"" {')
    assert all(len(line) < 200 for line in text.splitlines())


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(TypeError, match="to_dot: the first argument holds no variable"):
        to_dot(np.ones(3))
    with pytest.raises(TypeError, match="to_dot: what <lambda> returned holds no variable"):
        to_dot(lambda a: a * 2, np.ones(3))
    with pytest.raises(TypeError, match="arguments are for a function"):
        to_dot(neuronika.ones(2), 3)


def test_render_goes_through_the_graphviz_package(monkeypatch, tmp_path):
    calls = []

    class Source:
        def __init__(self, text):
            calls.append(text)

        def render(self, outfile, format, cleanup):           # noqa: A002 - graphviz's name
            calls.append((outfile, format, cleanup))

    fake = types.SimpleNamespace(Source=Source, ExecutableNotFound=RuntimeError)
    monkeypatch.setitem(sys.modules, "graphviz", fake)
    path = tmp_path / "graph.svg"
    text = to_dot(neuronika.ones(2).exp(), render=path)
    assert calls == [text, (str(path), "svg", True)]


def test_render_without_graphviz_warns_and_returns_the_text(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", None)           # import graphviz raises ImportError
    with pytest.warns(UserWarning, match="graphviz package is not installed"):
        text = to_dot(neuronika.ones(2).exp(), render=str(tmp_path / "graph.png"))
    assert text.startswith("digraph neuronika {") and not (tmp_path / "graph.png").exists()


def test_kinds():
    w = neuronika.ones(2).requires_grad()
    assert dot.kind(w._node) == "parameter" and dot.kind((w + 1)._node) == "op"
    assert dot.kind(neuronika.ones(2)._node) == "input"


def test_a_gradient_called_on_variables_is_drawn_as_its_graph():
    f = lambda x: (x.tanh() * x).sum()                              # noqa: E731
    x = neuronika.from_ndarray(np.ones(3)).requires_grad()
    forward_nodes, _ = parse(to_dot(f, x))
    nodes, edges = parse(to_dot(neuronika.grad(f), x))
    assert len(nodes) > len(forward_nodes) and len(edges) >= len(nodes) - 1
    assert sum("peripheries=2" in attrs for _, attrs in nodes.values()) == 1
    assert all("(3,) float64" in label for label, attrs in nodes.values() if "peripheries=2" in attrs)
