"""The plain-NumPy digits MLP of numpy_digits.py, trained data-parallel over MPI with
``value_and_grad``: each process differentiates the loss on its shard of every batch and
``distributed.average_gradients`` averages the gradient trees, so every process takes the
same step.

Run: pip install -e ".[examples,mpi]" && mpiexec -n 2 python examples/distributed_numpy_digits.py
(``python examples/distributed_numpy_digits.py`` runs it as one process; ``--epochs N``; ``--plot PATH``:
where rank 0 saves the training curve, with matplotlib installed)
"""
import argparse
import time

from sklearn.datasets import load_digits

import neuronika.numpy as np
from _plot import add_plot_option, report, save_curve           # examples/_plot.py
from neuronika import distributed, value_and_grad
from neuronika.data import Dataset, DistributedSampler

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=30)
add_plot_option(parser, "distributed_numpy_digits")
args = parser.parse_args()

start = time.perf_counter()
distributed.init()
rank, world = distributed.rank(), distributed.world_size()
say = print if rank == 0 else (lambda *a, **k: None)

rng = np.random.default_rng(0)                            # the same data split on every rank
digits = load_digits()
images, labels = digits.data / 16.0, digits.target
order = rng.permutation(len(images))
train, test = order[:1437], order[1437:]
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
    return -np.mean(np.sum(log_probs * targets, axis=1))


params = distributed.broadcast(init([64, 64, 10]))       # rank 0's initial parameters everywhere
velocity = {name: np.zeros_like(p) for name, p in params.items()}
step = value_and_grad(loss)
sampler = DistributedSampler(Dataset(images[train], onehot[train]), shuffle=True, seed=0,
                             drop_last=True)
per_rank = 32 // world                                   # a global batch of 32
curves = {"train loss": ([], []), "test error": ([], [])}
for epoch in range(1, args.epochs + 1):
    sampler.set_epoch(epoch)
    rows = train[list(sampler)]                          # this rank's shard of the epoch
    total = 0.0
    for first in range(0, len(rows) - per_rank + 1, per_rank):
        batch = rows[first:first + per_rank]
        value, grads = step(params, images[batch], onehot[batch])
        grads = distributed.average_gradients(grads)     # the gradient of the global batch
        for name in params:
            velocity[name] = 0.9 * velocity[name] - 0.1 * grads[name]
            params[name] = params[name] + velocity[name]
        total += value
    total = distributed.all_reduce(total, op="mean") * per_rank / max(1, len(rows))
    accuracy = np.mean(np.argmax(predict(params, images[test]), axis=1) == labels[test])
    for curve, value in zip(curves.values(), (total, 1 - accuracy)):
        curve[0].append(epoch)
        curve[1].append(float(value))
    if epoch % 10 == 0 or epoch == args.epochs:
        say(f"epoch {epoch:2d}  train loss {total:.4f}  test accuracy {accuracy:.4f}")

say(f"final test accuracy {accuracy:.4f} in {time.perf_counter() - start:.1f} s on {world} process(es)")
if rank == 0:
    report(save_curve(args.plot, curves, xlabel="epoch", ylabel="", title="distributed_numpy_digits.py",
                      log_y=True))
