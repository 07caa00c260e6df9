"""An MLP on scikit-learn's bundled 8x8 digits (no download).

Run: pip install -e ".[examples]" && python examples/mlp_digits.py

Trained with ``neuronika.optim.SGD`` (momentum) and a cosine learning-rate
schedule, fed by a shuffling ``neuronika.data.DataLoader``.
"""
import time

import numpy as np
from sklearn.datasets import load_digits

import neuronika
from neuronika import nn, optim
from neuronika.data import DataLoader, Dataset
from neuronika.nn import functional as F

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
    print(f"epoch {epoch:2d}  train loss {total / len(train):.4f}  test accuracy {accuracy:.4f}")

print(f"final test accuracy {accuracy:.4f} in {time.perf_counter() - start:.1f} s")
