"""An MLP on scikit-learn's bundled 8x8 digits (no download).

Run: pip install -e ".[examples]" && python examples/mlp_digits.py
(``--plot PATH``: where the training curve goes, with matplotlib installed)

Trained with ``neuronika.optim.SGD`` (momentum) and a cosine learning-rate
schedule, fed by a shuffling ``neuronika.data.DataLoader``.
"""
import argparse
import time

import numpy as np
from sklearn.datasets import load_digits

import neuronika
from _plot import add_plot_option, report, save_curve           # examples/_plot.py
from neuronika import nn, optim
from neuronika.data import DataLoader, Dataset
from neuronika.nn import functional as F

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
add_plot_option(parser, "mlp_digits")
args = parser.parse_args()

start = time.perf_counter()
neuronika.manual_seed(0)
rng = np.random.default_rng(0)

digits = load_digits()
images = (digits.data / 16.0).astype(np.float32)        # (1797, 64), pixels in [0, 1]
labels = digits.target
order = rng.permutation(len(images))
train, test = order[:1437], order[1437:]                 # 80% / 20%

model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
print(model)

optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)
loader = DataLoader(Dataset(images[train], labels[train]), batch_size=32, shuffle=True, seed=0)

curves = {"train loss": ([], []), "test error": ([], [])}
for epoch in range(1, 21):
    model.train()
    total = 0.0
    for batch_images, batch_labels in loader:
        loss = F.cross_entropy(model(batch_images), batch_labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        total += loss.item() * len(batch_labels)
    scheduler.step()
    model.eval()
    with neuronika.no_grad():
        predicted = model(images[test]).data.argmax(axis=1)
    accuracy = (predicted == labels[test]).mean()
    for curve, value in zip(curves.values(), (total / len(train), 1 - accuracy)):
        curve[0].append(epoch)
        curve[1].append(value)
    print(f"epoch {epoch:2d}  train loss {total / len(train):.4f}  test accuracy {accuracy:.4f}")

print(f"final test accuracy {accuracy:.4f} in {time.perf_counter() - start:.1f} s")
report(save_curve(args.plot, curves, xlabel="epoch", ylabel="", title="mlp_digits.py", log_y=True))
