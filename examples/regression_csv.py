"""Tabular regression from a CSV file: house prices (examples/data/houses.csv).

Run: pip install -e . && python examples/regression_csv.py
(``--plot PATH``: where the training curve goes, with matplotlib installed)

Loads the file with a converter for the neighbourhood column (a string) into a
class index, one-hot encodes it, standardises the numeric features, and trains
a small MLP with Adam and a learning-rate scheduler, printing the validation
error (root mean squared error, in thousands) per epoch.
"""
import argparse
from pathlib import Path

import numpy as np

import neuronika
from _plot import add_plot_option, report, save_curve           # examples/_plot.py
from neuronika import nn, optim
from neuronika.data import DataLoader, Dataset
from neuronika.nn import functional as F

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
add_plot_option(parser, "regression_csv")
args = parser.parse_args()

neuronika.manual_seed(0)
NEIGHBOURHOODS = ["north", "south", "east", "west", "centre"]

data = Dataset.from_csv(Path(__file__).parent / "data" / "houses.csv", labels=["price_k"],
                        converters={"neighbourhood": NEIGHBOURHOODS.index})
numeric, hood = data.records[:, :5], data.records[:, 5].astype(int)
features = np.concatenate([numeric, np.eye(len(NEIGHBOURHOODS), dtype=np.float32)[hood]], axis=1)
targets = data.labels.reshape(-1, 1).astype(np.float32)

train, validation = Dataset(features, targets).split([0.8, 0.2], seed=0)
mean, std = train.records.mean(0), train.records.std(0) + 1e-6
scale = float(train.labels.std())
train = Dataset((train.records - mean) / std, train.labels / scale)
validation = Dataset((validation.records - mean) / std, validation.labels / scale)
print(f"{len(train)} training rows, {len(validation)} validation rows, {features.shape[1]} features")

model = nn.Sequential(nn.Linear(features.shape[1], 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = optim.Adam(model.parameters(), lr=0.01)
scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.3)
loader = DataLoader(train, batch_size=32, shuffle=True, seed=0)

curve = ([], [])
for epoch in range(1, 61):
    model.train()
    for records, labels in loader:
        loss = F.mse_loss(model(records), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    scheduler.step()
    model.eval()
    with neuronika.no_grad():
        predicted = model(validation.records).data
    rmse = float(np.sqrt(((predicted - validation.labels) ** 2).mean())) * scale
    curve[0].append(epoch)
    curve[1].append(rmse)
    if epoch % 5 == 0 or epoch == 1:
        print(f"epoch {epoch:2d}  lr {scheduler.get_last_lr()[0]:.4f}  validation RMSE {rmse:6.2f}k")

baseline = float(validation.labels.std()) * scale
print(f"final validation RMSE {rmse:.2f}k (predicting the mean: {baseline:.2f}k)")
report(save_curve(args.plot, {"validation": curve}, xlabel="epoch", ylabel="RMSE (thousands)",
                  title="regression_csv.py"))
