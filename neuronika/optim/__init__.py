"""Optimizers, penalties, learning-rate schedulers and gradient clipping, with PyTorch's
update rules and keyword defaults.

>>> import neuronika
>>> from neuronika import nn, optim
>>> model = nn.Linear(3, 1)
>>> optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> loss = (model(neuronika.ones((4, 3))) ** 2).mean()
>>> loss.backward()
>>> optimizer.step()
>>> optimizer.zero_grad()
"""
from . import lr_scheduler
from .clip import clip_grad_norm_, clip_grad_value_
from .functional import FunctionalOptimizer, adam, adamw, apply_updates, sgd
from .optimizer import Optimizer
from .optimizers import AMSGrad, SGD, Adagrad, Adam, Adamax, AdamW, RMSprop
from .penalty import L1, L2, ElasticNet, Penalty

__all__ = ["Optimizer", "SGD", "Adagrad", "Adam", "AdamW", "AMSGrad", "RMSprop", "Adamax", "Penalty", "L1",
           "L2", "ElasticNet", "clip_grad_norm_", "clip_grad_value_", "lr_scheduler",
           "FunctionalOptimizer", "sgd", "adam", "adamw", "apply_updates"]
