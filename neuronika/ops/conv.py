"""Convolution (filled in by the convolution work)."""
