"""Array namespaces: which library (and device) an array belongs to, and what generated code calls.

A value's *space* is its array library on one device. NumPy is the default and is
written ``None`` everywhere (a leaf over a NumPy array costs one class check); any
other array-API library (CuPy on a GPU, array-api-strict in tests, ...) is a ``Space``,
one object per (namespace, device), so spaces compare with ``is``. Generated code
calls ``xp``: NumPy's namespace for NumPy arrays, the arrays' own array-API namespace
otherwise (``array_api_compat.array_namespace``, imported only when such an array is
first seen: ``pip install "neuronika[array-api]"``).

Each space has a *family* that selects the kernels of the op catalogue
(``ops.kernels.TABLE``): ``"numpy"``, ``"cupy"`` (NumPy's API on the GPU) or
``"generic"`` (the array-API standard only).

>>> import numpy as np
>>> from neuronika import backend
>>> backend.space_of(np.ones(3)) is None          # NumPy: the default space
True
>>> backend.name(None)
'numpy'
"""
from __future__ import annotations

import functools
import sys
import threading
import types

import numpy as np

__all__ = ["Space", "NamespaceError", "space_of", "foreign", "zeros", "name", "namespace", "NUMPY_XP",
           "resolve", "move", "to_numpy"]

FAMILIES = ("numpy", "cupy", "generic")
#: The families that have NumPy's whole API (an op that needs more than the standard but no
#: kernel of its own runs there).
NUMPY_API = ("numpy", "cupy")


class NamespaceError(TypeError):
    """Arrays of different libraries or devices met in one op, or an op that the arrays'
    library cannot run."""


# ---- NumPy's namespace for generated code ----------------------------------------------------------
# Templates are written in the array-API standard's function forms (``xp.sum(x, axis=0)``,
# ``xp.reshape(x, s)``, ``xp.astype(x, t)``). NumPy's functions of those names are Python
# wrappers around the array methods, about 1 µs slower per call at small sizes, so the
# namespace NumPy programs see is NumPy's own with these few names calling what the methods
# call: the ufuncs' reductions for sum, prod, max and min (the methods pass through a Python
# function of ``numpy._core._methods`` first, ~80 ns), the method for mean. Same results:
# the same calls.

_ADD, _MULTIPLY, _MAXIMUM, _MINIMUM = np.add.reduce, np.multiply.reduce, np.maximum.reduce, np.minimum.reduce


def _sum(x, /, *, axis=None, dtype=None, keepdims=False):
    return _ADD(x, axis, dtype, None, keepdims)


def _prod(x, /, *, axis=None, dtype=None, keepdims=False):
    return _MULTIPLY(x, axis, dtype, None, keepdims)


def _max(x, /, *, axis=None, keepdims=False):
    return _MAXIMUM(x, axis, None, None, keepdims)


def _min(x, /, *, axis=None, keepdims=False):
    return _MINIMUM(x, axis, None, None, keepdims)


def _mean(x, /, *, axis=None, keepdims=False):
    return x.mean(axis, None, None, keepdims)


def _reshape(x, /, shape, *, copy=None):
    return x.reshape(shape)


def _astype(x, dtype, /, *, copy=True):
    if x.__class__ in (float, int, complex, bool):     # a Python number argument (weak): a 0-d array
        return np.asarray(x, dtype=dtype)
    return x.astype(dtype, copy=copy)


def _permute_dims(x, /, axes):
    return x.transpose(axes)


def _matrix_transpose(x, /):
    return x.mT


def _cumulative_sum(x, /, *, axis=None, dtype=None, include_initial=False):   # NumPy < 2.1
    return np.cumsum(x, axis, dtype)


#: The standard's names NumPy 1.x spells otherwise.
_ALIASES = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "asinh": "arcsinh", "acosh": "arccosh",
            "atanh": "arctanh", "atan2": "arctan2", "concat": "concatenate", "pow": "power"}


def _numpy_namespace():
    module = types.ModuleType("neuronika.backend.numpy", "NumPy, as generated code calls it")
    module.__dict__.update({k: v for k, v in np.__dict__.items() if not k.startswith("__")})
    for new, old in _ALIASES.items():
        module.__dict__.setdefault(new, getattr(np, old))
    module.__dict__.setdefault("cumulative_sum", _cumulative_sum)
    module.__dict__.update(sum=_sum, prod=_prod, max=_max, min=_min, mean=_mean, reshape=_reshape,
                           astype=_astype, permute_dims=_permute_dims, matrix_transpose=_matrix_transpose)
    return module


#: ``xp`` of NumPy programs.
NUMPY_XP = _numpy_namespace()


# ---- spaces --------------------------------------------------------------------------------------

class Space:
    """One array library on one device: ``xp`` (its array-API namespace), ``device``,
    ``family`` (which kernels it gets) and ``name`` (for messages)."""

    __slots__ = ("xp", "device", "family", "name", "_dtypes", "_numpy_dtypes", "globals", "home",
                 "__weakref__")

    def __init__(self, xp, device, family, home=None):
        self.xp = xp
        self.device = device
        self.family = family
        self.home = device if home is None else home     # the library's default device
        module = getattr(xp, "__name__", type(xp).__name__)
        module = module.replace("array_api_compat.", "")
        text = str(device)
        if "Device('" in text:                         # array_api_strict.Device('CPU_DEVICE')
            text = text.split("Device('", 1)[1].rstrip("')")
        self.name = f"{module} on {text}"
        self._dtypes = {}
        self._numpy_dtypes = {}
        self.globals = None      # what its generated code sees (transform.templates.globals_for)

    def __repr__(self):
        return f"<space {self.name}>"

    def dtype(self, dtype):
        """The namespace's dtype for a NumPy dtype."""
        dtype = np.dtype(dtype)
        found = self._dtypes.get(dtype)
        if found is None:
            found = self._dtypes[dtype] = getattr(self.xp, dtype.name)
        return found

    def numpy_dtype(self, dtype):
        """The NumPy dtype for one of the namespace's dtypes (what graph nodes record)."""
        found = self._numpy_dtypes.get(dtype)
        if found is None:
            if isinstance(dtype, np.dtype):
                found = dtype
            else:
                found = np.dtype(str(dtype).rsplit(".", 1)[-1])
            self._numpy_dtypes[dtype] = found
        return found

    def asarray(self, value, dtype=None, copy=None):
        """``value`` (a number, a NumPy scalar or array) as an array of this space."""
        if dtype is not None:
            dtype = self.dtype(dtype)
        if isinstance(value, np.generic):
            value = value.item()
        return self.xp.asarray(value, dtype=dtype, device=self.device, copy=copy)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=self.dtype(dtype), device=self.device)

    def to_numpy(self, array):
        """A NumPy copy of one of this space's arrays."""
        if self.family == "cupy":
            return array.get()
        if self.device != self.home:            # a library that reaches the host from its default
            array = array.to_device(self.home)
        return np.array(array, copy=True)


_spaces = {}
_lock = threading.Lock()
_DEFAULT_DEVICES = {}

#: The standard's functions that make an array from no array (its device a keyword).
_CREATION = ("arange", "asarray", "empty", "eye", "full", "linspace", "ones", "zeros")


def _on_device(xp, device):
    """``xp`` with its creation functions making arrays on ``device`` unless told otherwise."""
    module = types.ModuleType(xp.__name__, f"{xp.__name__}, making arrays on {device}")
    module.__dict__.update({k: v for k, v in vars(xp).items() if not k.startswith("__")})
    for name in _CREATION:
        make = getattr(xp, name, None)
        if make is not None:
            module.__dict__[name] = _made_on(make, device)
    return module


def _made_on(make, device):
    @functools.wraps(make)
    def on_device(*args, **kwargs):
        if kwargs.get("device") is None:
            kwargs["device"] = device
        return make(*args, **kwargs)
    return on_device


def _compat():
    try:
        import array_api_compat
    except ImportError:
        raise ImportError("arrays of libraries other than NumPy need array-api-compat: "
                          "pip install \"neuronika[array-api]\" (or pip install array-api-compat)") from None
    return array_api_compat


def space_of(value):
    """None for NumPy arrays, NumPy scalars and Python numbers; else the value's ``Space``."""
    if isinstance(value, (np.ndarray, np.generic, int, float, complex)):
        return None
    compat = _compat()
    try:
        xp = compat.array_namespace(value)
    except TypeError:
        raise TypeError(f"{type(value).__module__}.{type(value).__name__} is not an array of NumPy "
                        f"or of an array-API library") from None
    return namespace(xp, compat.device(value))


def foreign(value):
    """Whether ``value`` is an array of another library than NumPy (CuPy, array-api-strict, ...)."""
    return (hasattr(value, "__array_namespace__") and not isinstance(value, (np.ndarray, np.generic))
            and not isinstance(value, type))


def zeros(shape, dtype, space=None):
    """Zeros of NumPy dtype ``dtype`` in ``space`` (None: NumPy)."""
    return np.zeros(shape, dtype) if space is None else space.zeros(shape, dtype)


def namespace(xp, device=None):
    """The space of namespace ``xp`` (a module: ``cupy``, ``array_api_strict``, ...) on
    ``device`` (its default device when None); None for NumPy."""
    compat = _compat()
    if compat.is_numpy_namespace(xp) or xp is NUMPY_XP:
        return None
    if compat.is_cupy_namespace(xp):
        import array_api_compat.cupy as xp
        family = "cupy"
    else:
        family = "generic"
    default = _DEFAULT_DEVICES.get(xp.__name__)
    if default is None:
        default = _DEFAULT_DEVICES[xp.__name__] = compat.device(xp.empty(0))
    if device is None:
        device = default
    key = (xp.__name__, repr(device))
    space = _spaces.get(key)
    if space is None:
        # on another device than the library's default (a second GPU), the arrays that generated
        # code, kernels and optimizers make are made there
        made = Space(xp if device == default else _on_device(xp, device), device, family, default)
        with _lock:
            space = _spaces.setdefault(key, made)
    return space


def name(space):
    """How messages name a space."""
    return "numpy" if space is None else space.name


def mixed(op_name, spaces):
    """The error for an op over arrays of different spaces."""
    named = " and ".join(dict.fromkeys(name(s) for s in spaces))
    return NamespaceError(f"{op_name}: its operands are arrays of different libraries or devices: "
                          f"{named}; move them to one with .to(device) (or neuronika.from_ndarray "
                          f"over arrays of one library)")


def refused(op, space):
    """The error for an op that the arrays' library cannot run (``op``: the op's name)."""
    why = op.needs or "it needs NumPy's API beyond the array-API standard"
    error = NamespaceError(f"{op.name}: not available for arrays of {name(space)}: {why} (the op runs "
                           f"on {', '.join(op.families)} arrays)")
    error.op = op.name
    return error


# ---- devices --------------------------------------------------------------------------------------

def resolve(device):
    """A device as the user writes it, as a space: ``"cpu"`` (NumPy), ``"cuda"`` or ``"cuda:N"``
    (CuPy on GPU N), an array-API namespace module (its default device), one of an array library's
    device objects (``cupy.cuda.Device(1)``, ``array_api_strict.Device("device1")``), a ``Space``
    or None (NumPy).

    >>> from neuronika import backend
    >>> backend.resolve("cpu") is None
    True
    """
    if device is None or isinstance(device, Space):
        return device
    if isinstance(device, str):
        text = device.strip().lower()
        if text in ("cpu", "numpy"):
            return None
        if text in ("cuda", "gpu") or text.startswith("cuda:"):
            try:
                import cupy
            except ImportError:
                raise ImportError(f"device {device!r} needs CuPy: pip install \"neuronika[gpu]\" "
                                  f"(cupy-cuda12x) on a machine with an NVIDIA GPU") from None
            number = int(text.partition(":")[2] or 0)
            return namespace(cupy, cupy.cuda.Device(number))
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N', or an array-API "
                         f"namespace")
    if isinstance(device, types.ModuleType):
        return namespace(device)
    library = sys.modules.get(type(device).__module__.split(".")[0])
    if library is not None and library is not np and hasattr(library, "__array_api_version__") or \
            type(device).__module__.startswith("cupy"):
        # one of an array library's device objects (cupy.cuda.Device(1), array_api_strict.Device(...))
        return namespace(library, device)
    raise TypeError(f"a device is 'cpu', 'cuda', 'cuda:N', an array-API namespace or a space, got "
                    f"{type(device).__name__}")


def to_numpy(value, space=None):
    """``value`` as a NumPy array (a copy when it is another library's)."""
    if space is None:
        space = space_of(value)
    return np.asarray(value) if space is None else space.to_numpy(value)


def move(value, target):
    """``value`` (an array of any space, or a number) as an array of space ``target`` (None:
    NumPy); a copy unless it is there already."""
    source = space_of(value)
    if source is target:
        return value
    host = to_numpy(value, source)
    return host if target is None else target.asarray(host, copy=source is None or None)
