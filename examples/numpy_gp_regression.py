"""Gaussian-process regression, fitted by maximising the log marginal likelihood,
written in plain NumPy: the only neuronika names are ``neuronika.numpy`` (imported
as ``np``) and ``grad``.

Run: python examples/numpy_gp_regression.py
(``--plot PATH``: where the training curve goes, with matplotlib installed)

Data: 150 noisy samples of a smooth function on [-3, 3], drawn from a GP with a
squared-exponential kernel of known hyperparameters. The kernel's log length
scale, log signal variance and log noise variance are fitted with Adam on the
negative log marginal likelihood

    0.5 y^T K^-1 y + 0.5 log det K + n/2 log(2 pi),   K = k(X, X) + noise I,

computed with ``np.linalg.cholesky``, ``np.linalg.solve`` and ``np.linalg.slogdet``.
"""
import argparse
import time

import neuronika.numpy as np
from _plot import add_plot_option, report, save_curve           # examples/_plot.py
from neuronika import grad

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
add_plot_option(parser, "numpy_gp_regression")
args = parser.parse_args()

start = time.perf_counter()
rng = np.random.default_rng(0)

TRUE = {"log_length": np.log(0.8), "log_signal": np.log(1.5), "log_noise": np.log(0.05)}


def kernel(a, b, log_length, log_signal):
    """Squared exponential: signal * exp(-|a - b|^2 / (2 length^2))."""
    distance = (a[:, None] - b[None, :]) ** 2
    return np.exp(log_signal) * np.exp(-0.5 * distance / np.exp(2 * log_length))


def covariance(params, x):
    n = x.shape[0]
    return kernel(x, x, params[0], params[1]) + np.exp(params[2]) * np.eye(n)


def negative_log_marginal_likelihood(params, x, y):
    k = covariance(params, x)
    lower = np.linalg.cholesky(k)                      # K = L L^T
    z = np.linalg.solve(lower, y)                      # y^T K^-1 y = |L^-1 y|^2
    _, logdet = np.linalg.slogdet(k)
    return 0.5 * np.dot(z, z) + 0.5 * logdet + 0.5 * x.shape[0] * np.log(2 * np.pi)


# ---- data: a draw from the true GP ----------------------------------------------------------
x_all = np.sort(rng.uniform(-3.0, 3.0, 200))
true = np.array([TRUE["log_length"], TRUE["log_signal"], TRUE["log_noise"]])
k_all = covariance(true, x_all)
y_all = np.linalg.cholesky(k_all) @ rng.standard_normal(200)
test = np.arange(200) % 4 == 0
x, y, x_test, y_test = x_all[~test], y_all[~test], x_all[test], y_all[test]

# ---- fit the hyperparameters with Adam on the gradient from neuronika --------------------
objective_grad = grad(negative_log_marginal_likelihood)
params = np.array([0.0, 0.0, np.log(0.5)])            # a neutral start
moment, second = np.zeros(3), np.zeros(3)
rate, beta1, beta2 = 0.05, 0.9, 0.999
curve = ([], [])
for step in range(1, 301):
    g = objective_grad(params, x, y)
    moment = beta1 * moment + (1 - beta1) * g
    second = beta2 * second + (1 - beta2) * g * g
    params = params - rate * (moment / (1 - beta1 ** step)) / (np.sqrt(second / (1 - beta2 ** step)) + 1e-8)
    if step % 50 == 0:
        value = float(negative_log_marginal_likelihood(params, x, y))
        curve[0].append(step)
        curve[1].append(value)
        print(f"step {step:3d}  negative log marginal likelihood {value:8.3f}")

# ---- predict at the held-out inputs --------------------------------------------------------
k = covariance(params, x)
mean = kernel(x_test, x, params[0], params[1]) @ np.linalg.solve(k, y)
rmse = float(np.sqrt(np.mean((mean - y_test) ** 2)))
baseline = float(np.sqrt(np.mean((y_test - y.mean()) ** 2)))
length, signal, noise = np.exp(params)
print(f"fitted length scale {length:.3f} (true {np.exp(TRUE['log_length']):.3f}), "
      f"signal variance {signal:.3f} (true {np.exp(TRUE['log_signal']):.3f}), "
      f"noise variance {noise:.4f} (true {np.exp(TRUE['log_noise']):.4f})")
print(f"held-out RMSE {rmse:.3f} (predicting the mean: {baseline:.3f}) "
      f"in {time.perf_counter() - start:.1f} s")
report(save_curve(args.plot, {"training": curve}, ylabel="negative log marginal likelihood",
                  title="numpy_gp_regression.py"))
