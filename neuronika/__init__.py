"""neuronika: automatic differentiation and dynamic neural networks on NumPy.

A tracer records the forward graph lazily; a transformer turns it into a
specialised forward and backward function written as Python source, compiled
once and cached by the graph's signature.

>>> import neuronika
>>> x = neuronika.rand((4, 8))
>>> w = neuronika.rand((8, 8)).requires_grad()
>>> b = neuronika.zeros(8).requires_grad()
>>> loss = (x.mm(w) + b).tanh().sum()
>>> loss.backward()
>>> w.grad.shape, b.grad.shape
((8, 8), (8,))
"""
from . import numpy, data, nn, optim, transform
from .creation import (arange, concatenate, eye, from_ndarray, full, geomspace, linspace, logspace,
                       ones, rand, randn, stack, zeros)
from .errors import (AnomalyError, ArgnumsError, BatchingError, GradientError, IndexingError,
                     LinAlgShapeError, RetraceWarning, ShapeError)
from .functional import (custom_vjp, grad, hessian, hvp, jacfwd, jacobian, jacrev, jit, jvp, linearize,
                         value_and_grad, vjp, vmap)
from .loops import checkpoint, scan  # noqa: F401  (a loop compiled once; rematerialisation)
from .numpy._special import (erf, expit, gelu, leaky_relu, log_softmax, logit, logsumexp, relu, sigmoid,
                             softmax, softplus)
from .random import manual_seed
from .transform.run import config
from .variable import Param, Var, VarDiff, detect_anomaly, no_grad, stop_gradient

__version__ = "0.1.0"

__all__ = [
    "numpy", "nn", "optim", "data", "config", "Var", "VarDiff", "Param", "no_grad", "detect_anomaly", "stop_gradient", "manual_seed", "transform",
    "ShapeError", "GradientError", "AnomalyError", "ArgnumsError", "IndexingError", "LinAlgShapeError",
    "RetraceWarning", "BatchingError",
    "zeros", "ones", "full", "rand", "randn", "eye", "from_ndarray", "arange", "linspace",
    "logspace", "geomspace", "concatenate", "stack",
    "grad", "value_and_grad", "vjp", "jit", "jacobian", "hessian", "hvp", "custom_vjp", "scan",
    "jvp", "linearize", "jacfwd", "jacrev", "checkpoint", "vmap",
    "logsumexp", "softmax", "log_softmax", "sigmoid", "expit", "logit", "relu", "leaky_relu", "softplus",
    "gelu", "erf",
]
