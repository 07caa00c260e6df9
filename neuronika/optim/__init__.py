"""Optimizers, penalties, learning-rate schedulers and gradient clipping."""
from .optimizer import Optimizer

__all__ = ["Optimizer"]
