"""An MLP on scikit-learn's bundled 8x8 digits, written in plain NumPy: the only
neuronika names are ``neuronika.numpy`` (imported as ``np``) and ``grad``.

Run: pip install -e ".[examples]" && python examples/numpy_digits.py
(``--plot PATH``: where the training curve goes, with matplotlib installed)

The parameters are a dict of arrays; ``grad(loss)`` traces the loss once and
afterwards each step runs one compiled function. Training is minibatch SGD
with momentum, written by hand.
"""
import argparse
import time

from sklearn.datasets import load_digits

import neuronika.numpy as np
from _plot import add_plot_option, report, save_curve           # examples/_plot.py
from neuronika import grad

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
add_plot_option(parser, "numpy_digits")
args = parser.parse_args()

start = time.perf_counter()
rng = np.random.default_rng(0)

digits = load_digits()
images = digits.data / 16.0                           # (1797, 64), pixels in [0, 1]
labels = digits.target
order = rng.permutation(len(images))
train, test = order[:1437], order[1437:]               # 80% / 20%
onehot = np.eye(10)[labels]


def init(sizes):
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        params[f"w{i}"] = rng.uniform(-bound, bound, (fan_in, fan_out))
        params[f"b{i}"] = np.zeros(fan_out)
    return params


def predict(params, x):
    h = np.tanh(x @ params["w0"] + params["b0"])
    logits = h @ params["w1"] + params["b1"]
    return logits - np.max(logits, axis=1, keepdims=True)


def loss(params, x, targets):
    logits = predict(params, x)
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    penalty = 1e-4 * sum(np.sum(w ** 2) for name, w in params.items() if name.startswith("w"))
    return -np.mean(np.sum(log_probs * targets, axis=1)) + penalty


params = init([64, 64, 10])
velocity = {name: np.zeros_like(p) for name, p in params.items()}
loss_grad = grad(loss)
batch = 32
curves = {"train loss": ([], []), "test error": ([], [])}
for epoch in range(1, 31):
    shuffled = rng.permutation(train)
    for first in range(0, len(shuffled) - batch + 1, batch):
        rows = shuffled[first:first + batch]
        grads = loss_grad(params, images[rows], onehot[rows])
        for name in params:
            velocity[name] = 0.9 * velocity[name] - 0.1 * grads[name]
            params[name] = params[name] + velocity[name]
    if epoch % 5 == 0:
        accuracy = np.mean(np.argmax(predict(params, images[test]), axis=1) == labels[test])
        value = loss(params, images[train], onehot[train])
        for curve, y in zip(curves.values(), (value, 1 - accuracy)):
            curve[0].append(epoch)
            curve[1].append(float(y))
        print(f"epoch {epoch:2d}  train loss {value:.4f}  test accuracy {accuracy:.4f}")

print(f"final test accuracy {accuracy:.4f} in {time.perf_counter() - start:.1f} s")
report(save_curve(args.plot, curves, xlabel="epoch", ylabel="", title="numpy_digits.py", log_y=True))
