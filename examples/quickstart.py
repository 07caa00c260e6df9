"""A first hour with neuronika: the Rust crate's documented examples in Python,
then a small model trained by hand with ``parameters()``.

Run: python examples/quickstart.py
"""
import numpy as np

import neuronika


def section(title):
    print(f"\n== {title} " + "=" * (60 - len(title)))


neuronika.manual_seed(0)

section("Leaves")
# Leaves from constants, random values and an ndarray. All are Vars: no gradient.
ones = neuronika.ones((3, 3))
uniform = neuronika.rand(5)
from_array = neuronika.from_ndarray(np.array([[1.0, 2.0], [3.0, 4.0]]))
print("ones((3, 3)) =", ones)
print("rand(5)      =", uniform)
print("from_ndarray =", from_array, " (a float64 array stays float64)")
print("ones.data is a NumPy array:", type(ones.data).__name__, ones.data.dtype)

section("Operations are lazy")
# Building computes shapes only; forward() computes the values.
x = neuronika.rand(5)
q = neuronika.rand((5, 5))
y = x.vm(q).vv(x)          # x^T Q x, a 0-dim value
print("y has shape", y.shape, "before forward()")
y.forward()
print("y =", y.item(), " (NumPy says", float(x.data @ q.data @ x.data), ")")

section("Differentiability")
# requires_grad() makes a differentiable leaf (a VarDiff); anything computed from
# a VarDiff is a VarDiff too, anything else stays a Var.
a = neuronika.rand(3)
b = neuronika.rand(3).requires_grad()
print("Var + Var is a", type(a + a).__name__, "; Var + VarDiff is a", type(a + b).__name__)

section("Backward and the scope of a graph")
w = neuronika.rand((3, 3)).requires_grad()   # leaf
bias = neuronika.rand(3).requires_grad()     # leaf
inputs = neuronika.rand((10, 3))             # leaf
h = inputs.mm(w.t()) + bias                  # the graph: h -> (mm, t, add) -> leaves
h.forward()
h.backward(1.0)                              # the seed 1.0 is broadcast over h
print("w.grad =\n", w.grad)
print("bias.grad =", bias.grad, " (10 rows, each with gradient 1)")
del h                                        # the graph is freed; only the leaves remain
print("leaves are still there: w.shape =", w.shape)
print("\nThe code neuronika generated for a graph like that one:")
print((inputs.mm(w.t()) + bias).sum().source())

section("Gradients accumulate until zeroed")
v = neuronika.full(2, 3.0).requires_grad()
(v * v).sum().backward()
(v * v).sum().backward()
print("two backwards of sum(v * v) at v = 3:", v.grad, " (2 * 2 * 3)")
v.zero_grad()
print("after zero_grad():", v.grad)

section("Training by hand with parameters()")
# Least squares: find w_true from noisy observations, with plain gradient descent.
rng = np.random.default_rng(0)
features = rng.standard_normal((64, 4)).astype(np.float32)
w_true = np.array([[1.5], [-2.0], [0.5], [3.0]], dtype=np.float32)
targets = features @ w_true + 0.01 * rng.standard_normal((64, 1)).astype(np.float32)

data = neuronika.from_ndarray(features)
labels = neuronika.from_ndarray(targets)
weight = neuronika.zeros((4, 1)).requires_grad()
offset = neuronika.zeros(1).requires_grad()
learning_rate = 0.1
for step in range(40):
    loss = ((data.mm(weight) + offset - labels) ** 2).mean()
    loss.backward()
    for p in loss.parameters():        # weight, offset: the live arrays
        p.data -= learning_rate * p.grad
        p.zero_grad()
    if step % 5 == 0 or step == 39:
        print(f"step {step:2d}  loss {loss.item():.5f}")
print("learned w:", weight.data.ravel().round(3), " true w:", w_true.ravel())
print("program cache:", neuronika.transform.cache_info())

section("A full training loop: model, optimizer, scheduler, loader")
from neuronika import nn, optim                                   # noqa: E402
from neuronika.data import DataLoader, Dataset                    # noqa: E402
from neuronika.nn import functional as F                          # noqa: E402

# y = sin(3x) + noise, fitted by a small MLP.
inputs = rng.uniform(-1, 1, (256, 1)).astype(np.float32)
outputs = (np.sin(3 * inputs) + 0.05 * rng.standard_normal((256, 1))).astype(np.float32)
loader = DataLoader(Dataset(inputs, outputs), batch_size=32, shuffle=True, seed=0)
model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
optimizer = optim.Adam(model.parameters(), lr=0.03)
scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
for epoch in range(1, 31):
    for x_batch, y_batch in loader:
        loss = F.mse_loss(model(x_batch), y_batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    scheduler.step()
    if epoch % 5 == 0:
        with neuronika.no_grad():
            mse = F.mse_loss(model(inputs), outputs).item()
        print(f"epoch {epoch:2d}  lr {scheduler.get_last_lr()[0]:.4f}  mean squared error {mse:.5f}")
import os, tempfile                                               # noqa: E401,E402
path = os.path.join(tempfile.gettempdir(), "quickstart_model.npz")
model.save(path)
print("saved; reloaded keys:", list(nn.load(path)))
