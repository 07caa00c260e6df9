"""The digits MLP of mlp_digits.py, trained data-parallel over MPI.

Run: pip install -e ".[examples,mpi]" && mpiexec -n 2 python examples/distributed_digits.py
(``python examples/distributed_digits.py`` runs it as one process; ``--epochs N``; ``--plot PATH``: where
rank 0 saves the training curve, with matplotlib installed)

Every process builds the model; ``DistributedDataParallel`` copies rank 0's parameters to
the others and averages the gradients after each backward; ``DistributedSampler`` gives each
process its shard of every epoch. The global batch is 32 (as in mlp_digits.py), split over
the processes, so the training follows the single-process run. Rank 0 prints.
"""
import argparse
import time

import numpy as np
from sklearn.datasets import load_digits

import neuronika
from _plot import add_plot_option, report, save_curve           # examples/_plot.py
from neuronika import distributed, nn, optim
from neuronika.data import DataLoader, Dataset, DistributedSampler
from neuronika.nn import functional as F

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=20)
add_plot_option(parser, "distributed_digits")
args = parser.parse_args()

start = time.perf_counter()
distributed.init()
rank, world = distributed.rank(), distributed.world_size()
say = print if rank == 0 else (lambda *a, **k: None)

neuronika.manual_seed(0)
rng = np.random.default_rng(0)
digits = load_digits()
images = (digits.data / 16.0).astype(np.float32)        # (1797, 64), pixels in [0, 1]
labels = digits.target
order = rng.permutation(len(images))
train, test = order[:1437], order[1437:]                 # 80% / 20%, the same on every rank

model = nn.DistributedDataParallel(
    nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10)))
neuronika.manual_seed(1 + rank)                          # each rank its own dropout masks
say(f"{world} process(es); {model}")

optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
train_set = Dataset(images[train], labels[train])
sampler = DistributedSampler(train_set, shuffle=True, seed=0)
loader = DataLoader(train_set, batch_size=max(1, 32 // world), sampler=sampler)

curves = {"train loss": ([], []), "test error": ([], [])}
for epoch in range(1, args.epochs + 1):
    sampler.set_epoch(epoch)                             # a new permutation, the same on every rank
    model.train()
    total = 0.0
    for batch_images, batch_labels in loader:
        loss = F.cross_entropy(model(batch_images), batch_labels)
        loss.backward()                                  # starts the gradient all-reduces
        optimizer.step()                                 # waits for them, then steps
        optimizer.zero_grad()
        total += loss.item() * len(batch_labels)
    scheduler.step()
    total = distributed.all_reduce(total) / (len(loader.sampler) * world)
    model.eval()                                         # in eval mode the model communicates nothing
    with neuronika.no_grad():
        predicted = model(images[test]).data.argmax(axis=1)
    accuracy = (predicted == labels[test]).mean()
    for curve, value in zip(curves.values(), (total, 1 - accuracy)):
        curve[0].append(epoch)
        curve[1].append(value)
    say(f"epoch {epoch:2d}  train loss {total:.4f}  test accuracy {accuracy:.4f}")

say(f"final test accuracy {accuracy:.4f} in {time.perf_counter() - start:.1f} s on {world} process(es)")
if rank == 0:
    report(save_curve(args.plot, curves, xlabel="epoch", ylabel="", title="distributed_digits.py", log_y=True))
