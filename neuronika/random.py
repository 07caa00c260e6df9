"""The random state behind ``rand``, ``randn``, dropout masks and initialisers."""
from __future__ import annotations

import numpy as np

_state = {"generator": np.random.default_rng()}


def manual_seed(seed: int) -> None:
    """Make every random draw of neuronika reproducible from ``seed``.

    >>> import neuronika
    >>> neuronika.manual_seed(0); a = neuronika.rand(3).data
    >>> neuronika.manual_seed(0); b = neuronika.rand(3).data
    >>> bool((a == b).all())
    True
    """
    _state["generator"] = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The generator in use now (replaced by ``manual_seed``)."""
    return _state["generator"]
