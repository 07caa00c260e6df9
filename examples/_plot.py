"""The examples' training-curve helper: a PNG when matplotlib is installed
(``pip install -e ".[plot]"``), nothing at all otherwise."""
import os
import tempfile


def add_plot_option(parser, name):
    """``--plot PATH`` on an argparse parser; the default is ``<temp dir>/<name>.png``,
    ``--plot ''`` draws nothing."""
    default = os.path.join(tempfile.gettempdir(), f"{name}.png")
    parser.add_argument("--plot", default=default, metavar="PATH",
                        help=f"where to save the training curve, if matplotlib is installed "
                             f"(default: {default}; '' for none)")


def save_curve(path, curves, xlabel="step", ylabel="loss", title=None, log_y=False):
    """Draw ``curves`` ({label: (xs, ys)}) into the PNG ``path`` and return ``path``; return
    None when ``path`` is empty or matplotlib is not installed.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "curve.png")
    >>> save_curve(path, {"train": ([1, 2, 3], [3.0, 2.0, 1.5])}) in (path, None)
    True
    """
    if not path:
        return None
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")                   # files only: no display needed
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4))
    for label, (xs, ys) in curves.items():
        axes.plot(xs, ys, label=label, marker="." if len(xs) < 30 else None)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if log_y:
        axes.set_yscale("log")
    if title:
        axes.set_title(title)
    if len(curves) > 1:
        axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def report(path):
    """Print where the curve went (``path`` from ``save_curve``; None prints nothing)."""
    if path:
        print(f"training curve saved to {path}")
