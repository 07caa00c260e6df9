"""The parts of complex numbers: real, imag, conj, angle.

Gradients follow HIPS autograd's convention. For a real objective L of
z = x + iy the gradient is dL/dx - 1j * dL/dy; the adjoint of a holomorphic
function is then ``dy * f'(z)`` (no conjugate), so the other ops' adjoints hold
for complex values as written. These four are not holomorphic, and each has its
own adjoint. A real output's gradient is real: the engine converts an adjoint
to its input's dtype (a complex one of a real input keeps its real part).
"""
from __future__ import annotations

import numpy as np

from . import ZERO, declare


def _part_dtype(inputs, attrs):
    """The real dtype of the parts (complex64 -> float32); a real input keeps its dtype."""
    return np.empty(0, inputs[0].dtype).real.dtype


def _angle_dtype(inputs, attrs):
    return np.angle(np.empty(0, inputs[0].dtype)).dtype


def _only_complex(src):
    """``src`` for a complex input; zero for a real one (whose part or angle is piecewise
    constant: imag is 0, angle is 0 or pi)."""
    def grad(ctx):
        return src if ctx.dtypes["x"].kind == "c" else ZERO
    return grad


def _part(name, forward, grad, doc, dtype=_part_dtype):
    return declare(name, ("x",), forward, {"x": grad}, elementwise=True, dtype=dtype, doc=doc)


# d re(z) = dx: the gradient is dy itself, made complex by the engine (its input's dtype).
REAL = _part("real", "xp.real(x)", "dy", "the real part (a real value)")
# d im(z) = dy_im: dL/dx - 1j dL/dy = -1j * dy. (The number goes on the right: a 0-d dy is a
# NumPy float64 scalar, and a Python complex on the left would make a Python complex of it.)
def _imag_forward(ctx):
    # the standard's imag takes complex values only
    return "xp.imag(x)" if ctx.dtypes["x"].kind == "c" else "xp.zeros_like(x)"


def _angle_forward(ctx):
    """atan2(imag, real) (NumPy's angle, which the standard does not have); atan2(0, x) for a
    real x: 0 or pi (pi at -0.0, as NumPy)."""
    if ctx.dtypes["x"].kind == "c":
        return "xp.atan2(xp.imag(x), xp.real(x))"
    x = "x" if ctx.dtypes["x"] == ctx.dtype else "xp.astype(x, dtype)"
    return f"xp.atan2(xp.zeros_like({x}), {x})"


IMAG = _part("imag", _imag_forward, _only_complex("dy * -1j"),
             "the imaginary part (a real value; zeros for a real x)")
CONJ = _part("conj", "xp.conj(x)", "xp.conj(dy)", "the complex conjugate", dtype=None)
# angle = atan2(y, x): d/dx = -y / |z|^2, d/dy = x / |z|^2, so the gradient is
# dy * (-y - 1j x) / |z|^2 = -1j * dy * conj(z) / |z|^2 = -1j * dy / z.
ANGLE = _part("angle", _angle_forward, _only_complex("dy * -1j / x"),
              "the argument of a complex number, in (-pi, pi] (0 or pi for a real x)",
              dtype=_angle_dtype)

__all__ = ["REAL", "IMAG", "CONJ", "ANGLE"]
