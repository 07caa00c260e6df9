"""Many processes, one training run: MPI collectives over arrays and parameter trees.

Start the same script once per process with ``mpiexec -n 4 python train.py`` (or
``srun -n 4 python train.py`` under Slurm); each process finds its place with ``init()``,
``rank()`` and ``world_size()``. Run as a plain ``python train.py``, the world is one
process and every function here works (reductions return their input), so one script
serves both. mpi4py (``pip install "neuronika[mpi]"``) is imported only when there is
another process to talk to.

Arrays travel through MPI's buffer interface (mpi4py's ``Allreduce``, ``Bcast``,
``Iallreduce``), never pickled. Trees are NumPy arrays, neuronika leaves (their data),
Python or NumPy numbers, and dicts / lists / tuples of those, nested: arrays and leaves
are updated in place; numbers (which cannot be) are replaced in the returned tree.

>>> import numpy as np
>>> from neuronika import distributed
>>> distributed.init()
>>> distributed.rank(), distributed.world_size()
(0, 1)
>>> grads = {"w": np.array([1.0, 2.0]), "b": 0.5}
>>> distributed.all_reduce(grads, op="mean")          # one process: the mean is the value
{'w': array([1., 2.]), 'b': 0.5}

Faults: with more than one process, ``init()`` installs a ``sys.excepthook`` that prints the
traceback and aborts every process (``MPI_Abort``), so an exception on one rank never leaves
the others waiting in a collective. Collectives first check that every rank passes the same
tree (structure, shapes, dtypes) and raise on every rank, naming the entry, if not.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from numbers import Number

import numpy as np

from .errors import ShapeError
from .variable import Var

__all__ = ["init", "is_initialized", "rank", "world_size", "barrier", "broadcast", "all_reduce",
           "average_gradients", "save_on_main"]

#: Environment variables by which launchers announce the number of processes.
LAUNCHER_SIZES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE",
                  "SLURM_STEP_NUM_TASKS")

OPS = ("sum", "mean", "max", "min")

_world = None


# ---- the communicator ------------------------------------------------------------------------------

class _Done:
    """A request that is already complete (the one-process world's)."""

    def Wait(self):
        return None


class _Single:
    """The world of one process: every collective is the identity."""

    rank = 0
    size = 1
    comm = None

    def allreduce(self, buffer, op):
        pass

    def iallreduce(self, buffer, op):
        return _Done()

    def waitall(self, requests):
        pass

    def bcast(self, buffer, root):
        pass

    def barrier(self):
        pass

    def allgather_object(self, value):
        return [value]

    def bcast_object(self, value, root=0):
        return value

    def abort(self, code=1):
        os._exit(code)


class _MPI:
    """An mpi4py communicator; arrays go through the buffer interface only (the ``*_object``
    methods pickle, and carry small metadata: names, shapes, messages)."""

    def __init__(self, comm, MPI):
        self.comm = comm
        self.MPI = MPI
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}

    def allreduce(self, buffer, op):
        self.comm.Allreduce(self.MPI.IN_PLACE, _bytes_if_bool(buffer), op=self._ops[op])

    def iallreduce(self, buffer, op):
        return self.comm.Iallreduce(self.MPI.IN_PLACE, _bytes_if_bool(buffer), op=self._ops[op])

    def waitall(self, requests):
        self.MPI.Request.Waitall(list(requests))

    def bcast(self, buffer, root):
        self.comm.Bcast(_bytes_if_bool(buffer), root=root)

    def barrier(self):
        self.comm.Barrier()

    def allgather_object(self, value):
        return self.comm.allgather(value)

    def bcast_object(self, value, root=0):
        return self.comm.bcast(value, root=root)

    def abort(self, code=1):
        self.comm.Abort(code)


def _bytes_if_bool(buffer):
    """MPI defines no MAX or MIN on its C bool type: booleans travel as bytes (0 or 1)."""
    return buffer.view(np.uint8) if buffer.dtype == np.bool_ else buffer


def _launcher_size():
    """(variable, size) from the first launcher variable set, or None: a plain process."""
    for name in LAUNCHER_SIZES:
        value = os.environ.get(name)
        if value and value.isdigit():
            return name, int(value)
    return None


def _import_mpi(why):
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"neuronika.distributed: {why}, and talking to the other processes needs "
                          f"mpi4py, which is not installed; run pip install \"neuronika[mpi]\" (mpi4py "
                          f"and the MPICH library)") from error
    return MPI


def init(comm=None) -> None:
    """Join the processes of this run (a no-op after the first call).

    Without ``comm``: if a launcher (``mpiexec``, ``srun``) started several processes, MPI's
    world communicator (mpi4py is imported here, and an ImportError says how to install it
    if it is missing); otherwise a world of one process, without importing mpi4py. Or pass
    an mpi4py communicator to use. With more than one process, an uncaught exception on any
    of them prints its traceback and aborts them all (see the module docstring).

    >>> from neuronika import distributed
    >>> distributed.init()
    >>> distributed.is_initialized()
    True
    """
    global _world
    if _world is not None:
        if comm is not None and comm is not _world.comm:
            raise RuntimeError("distributed.init: already initialised with another communicator")
        return
    if comm is None:
        launched = _launcher_size()
        if launched is None or launched[1] <= 1:
            _world = _Single()
            return
        name, size = launched
        MPI = _import_mpi(f"this process is one of {size} that a launcher started ({name}={size})")
        world = _MPI(MPI.COMM_WORLD, MPI)
        if world.size != size:
            raise RuntimeError(
                f"distributed.init: the launcher started {size} processes ({name}={size}) but MPI sees "
                f"{world.size}: mpiexec and mpi4py use different MPI libraries; run the mpiexec of the "
                f"library mpi4py uses ({MPI.Get_library_version().splitlines()[0].strip()})")
    else:
        from mpi4py import MPI
        world = _MPI(comm, MPI)
    _world = world
    if world.size > 1:
        _install_excepthook(world)


def _install_excepthook(world):
    previous = sys.excepthook

    def abort_every_rank(kind, value, traceback):
        try:
            previous(kind, value, traceback)
            sys.stderr.write(f"neuronika.distributed: rank {world.rank} of {world.size} stopped on "
                             f"{kind.__name__}; aborting every rank (MPI_Abort) so that none waits "
                             f"forever\n")
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            time.sleep(0.2)       # the launcher forwards output through pipes; let it read them
        finally:
            world.abort(1)

    sys.excepthook = abort_every_rank


def is_initialized() -> bool:
    """Whether ``init()`` has run in this process."""
    return _world is not None


def _get():
    if _world is None:
        init()
    return _world


def rank() -> int:
    """This process's number, 0 to ``world_size() - 1`` (``init()`` runs if it has not)."""
    return _get().rank


def world_size() -> int:
    """The number of processes in this run (``init()`` runs if it has not)."""
    return _get().size


def barrier() -> None:
    """Wait until every process has reached this call."""
    _get().barrier()


# ---- trees ------------------------------------------------------------------------------------------

def _leaves(tree, where, out):
    """Append (where, array, writable target or None) for every leaf of ``tree``, in order."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            _leaves(value, f"{where}[{key!r}]", out)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            _leaves(value, f"{where}[{i}]", out)
    elif isinstance(tree, Var):
        node = tree._node
        if node.op is not None:
            raise TypeError(f"{where} is the result of {node.op.name}, not a leaf; only a leaf's data "
                            f"can be communicated in place (pass .data for a copy of the value)")
        out.append((where, node.value, node.value))
    elif isinstance(tree, np.ndarray):
        out.append((where, tree, tree))
    elif isinstance(tree, (Number, np.generic)):
        out.append((where, np.array(tree), None))
    else:
        raise TypeError(f"{where} is a {type(tree).__name__}; a tree holds arrays, neuronika leaves, "
                        f"numbers, and dicts, lists and tuples of them")


def _rebuild(tree, results):
    """``tree`` with its numbers replaced by the next values of ``results`` (arrays and
    leaves were updated in place); dicts and lists are updated in place."""
    if isinstance(tree, dict):
        for key in tree:
            tree[key] = _rebuild(tree[key], results)
        return tree
    if isinstance(tree, list):
        for i, value in enumerate(tree):
            tree[i] = _rebuild(value, results)
        return tree
    if isinstance(tree, tuple):
        items = [_rebuild(value, results) for value in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    value = next(results)
    if isinstance(tree, (Number, np.generic)):
        if isinstance(tree, np.generic):
            return value[()]
        return type(tree)(value.item()) if not isinstance(tree, bool) else bool(value.item())
    return tree


def _signature(items):
    return [(where, array.dtype.str, array.shape) for where, array, _ in items]


def _digest(signature):
    text = repr(signature).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=7).digest(), "little")


def _check_same(world, what, signature):
    """Raise on every rank, naming the first entry that differs, unless every rank passed
    the same structure, shapes and dtypes (one small all-reduce when they did)."""
    digest = _digest(signature)
    both = np.array([digest, -digest], dtype=np.int64)
    world.allreduce(both, "min")
    if both[0] == -both[1]:
        return
    _raise_mismatch(what, world.allgather_object(signature), "entry")


def _raise_mismatch(what, signatures, noun, should="pass the same tree"):
    """The error every rank raises, computed from every rank's (name, dtype, shape) list."""
    first = signatures[0]
    label = (lambda name: f"{noun} {name}") if noun == "entry" else (lambda name: f"{noun} '{name}'")
    for other_rank, other in enumerate(signatures[1:], start=1):
        if other == first:
            continue
        names, other_names = [s[0] for s in first], [s[0] for s in other]
        if names != other_names:
            only0 = [n for n in names if n not in other_names]
            only1 = [n for n in other_names if n not in names]
            if only0 or only1:
                detail = "; ".join(part for part in (
                    f"{noun}s only on rank 0: {', '.join(only0)}" if only0 else "",
                    f"{noun}s only on rank {other_rank}: {', '.join(only1)}" if only1 else "") if part)
            else:
                detail = f"the {noun}s come in another order on rank {other_rank}"
            raise ValueError(f"{what}: the ranks disagree on the {noun}s ({detail}); every rank must "
                             f"{should}")
        for (name, dtype, shape), (_, other_dtype, other_shape) in zip(first, other):
            if shape != other_shape:
                raise ShapeError(f"{what}: {label(name)} has shape {tuple(shape)} on rank 0 but "
                                 f"{tuple(other_shape)} on rank {other_rank}; every rank must {should}")
            if dtype != other_dtype:
                raise TypeError(f"{what}: {label(name)} has dtype {np.dtype(dtype)} on rank 0 but "
                                f"{np.dtype(other_dtype)} on rank {other_rank}; every rank must {should}")
    raise ValueError(f"{what}: the ranks disagree; every rank must {should}")   # only digests differed


def _groups(items):
    """Items grouped by dtype, in first-seen order."""
    groups = {}
    for item in items:
        groups.setdefault(item[1].dtype, []).append(item)
    return groups.values()


def _direct(array):
    return array.flags.c_contiguous and array.flags.writeable


def _communicate(items, run):
    """Call ``run(buffer)`` on one contiguous buffer per dtype holding every item's values
    (an item's own array when it is the only one of its dtype and contiguous), then write
    the results back. Returns the result arrays, in order."""
    results = {}
    for group in _groups(items):
        if len(group) == 1 and group[0][2] is not None and _direct(group[0][2]):
            where, array, _ = group[0]
            run(array)
            results[where] = array
            continue
        sizes = [array.size for _, array, _ in group]
        flat = np.empty(sum(sizes), group[0][1].dtype)
        start = 0
        for (_, array, _), size in zip(group, sizes):
            flat[start:start + size] = array.ravel()
            start += size
        run(flat)
        start = 0
        for (where, array, target), size in zip(group, sizes):
            value = flat[start:start + size].reshape(array.shape)
            start += size
            if target is not None:
                if not target.flags.writeable:
                    raise ValueError(f"{where} is a read-only array; it cannot be updated in place")
                np.copyto(target, value)
                value = target
            results[where] = value
    return (results[where] for where, _, _ in items)


def all_reduce(tree, op: str = "sum", check: bool = True):
    """Combine ``tree`` across every process with ``op`` (``"sum"``, ``"mean"``, ``"max"``,
    ``"min"``): afterwards every rank holds the same values. Arrays and leaves are updated
    in place; the tree is returned (with its numbers replaced). ``check`` first verifies
    that the ranks passed the same structure, shapes and dtypes (one small extra
    all-reduce), raising on every rank otherwise.

    >>> import numpy as np
    >>> from neuronika import distributed
    >>> x = np.array([3.0, 4.0])
    >>> distributed.all_reduce(x, op="max") is x
    True
    """
    what = f"all_reduce(op={op!r})"
    if op not in OPS:
        raise ValueError(f"all_reduce: op must be one of {', '.join(map(repr, OPS))}, got {op!r}")
    items = []
    _leaves(tree, "tree", items)
    for where, array, _ in items:
        kind = array.dtype.kind
        if kind not in "biufc":
            raise TypeError(f"{what}: {where} has dtype {array.dtype}, not numbers")
        if op == "mean" and kind not in "fc":
            raise TypeError(f"{what}: {where} has dtype {array.dtype}, whose mean would not be of its "
                            f"dtype; use op='sum' and divide, or convert it to a float dtype")
        if op in ("max", "min") and kind == "c":
            raise TypeError(f"{what}: {where} is complex ({array.dtype}), which has no order")
        if op in ("sum", "mean") and kind == "b":
            raise TypeError(f"{what}: {where} is boolean; use op='max' (any) or 'min' (all)")
    world = _get()
    if world.size == 1:
        return tree
    if check:
        _check_same(world, what, _signature(items))
    size = world.size

    def run(buffer):
        world.allreduce(buffer, "sum" if op == "mean" else op)
        if op == "mean":
            buffer /= size

    return _rebuild(tree, _communicate(items, run))


def broadcast(tree, root: int = 0, check: bool = True):
    """Copy rank ``root``'s values of ``tree`` to every other rank (in place for arrays and
    leaves; the tree is returned, its numbers replaced by the root's). ``check`` as in
    ``all_reduce``.

    >>> import numpy as np
    >>> from neuronika import distributed
    >>> distributed.broadcast({"w": np.ones(2)})
    {'w': array([1., 1.])}
    """
    world = _get()
    if not isinstance(root, int) or not 0 <= root < world.size:
        raise ValueError(f"broadcast: root must be a rank, 0 to {world.size - 1}, got {root!r}")
    items = []
    _leaves(tree, "tree", items)
    if world.size == 1:
        return tree
    if check:
        _check_same(world, f"broadcast(root={root})", _signature(items))
    return _rebuild(tree, _communicate(items, lambda buffer: world.bcast(buffer, root)))


def average_gradients(grads, check: bool = True):
    """The mean over every process of ``grads``, the tree that ``neuronika.grad`` (or the
    second half of what ``value_and_grad``) returns, in place (the tree is returned). With
    a mean loss over equal shards on every rank, this is the gradient of the mean loss over
    the whole batch.

    >>> import numpy as np
    >>> import neuronika
    >>> from neuronika import distributed
    >>> loss = lambda w, x: ((x @ w) ** 2).mean()
    >>> grads = neuronika.grad(loss)(np.ones(2), np.ones((4, 2)))
    >>> distributed.average_gradients(grads)
    array([4., 4.])
    """
    return all_reduce(grads, op="mean", check=check)


# ---- files ------------------------------------------------------------------------------------------

def save_on_main(path, state) -> str:
    """Write ``state`` (a Module, anything with ``state_dict()``, or a dict of arrays) to
    ``path`` as ``.npz`` (no pickle; ``.npz`` is added as ``np.savez`` would) from rank 0
    only, atomically (a temporary file renamed over ``path``), while the other ranks wait;
    on return the file is complete on every rank, so each may read it with ``nn.load``.
    Returns the path written. If rank 0 fails, every rank raises.

    >>> import os, tempfile
    >>> from neuronika import distributed, nn
    >>> model = nn.Linear(2, 1)
    >>> path = distributed.save_on_main(os.path.join(tempfile.mkdtemp(), "model"), model)
    >>> path.endswith("model.npz"), sorted(nn.load(path))
    (True, ['bias', 'weight'])
    """
    world = _get()
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    failure = None
    if world.rank == 0:
        try:
            _write_atomically(path, state)
        except BaseException as error:          # every rank must hear of it, then it is re-raised
            failure = error
    message = world.bcast_object(None if failure is None else f"{type(failure).__name__}: {failure}")
    if failure is not None:
        raise failure
    if message is not None:
        raise RuntimeError(f"save_on_main: rank 0 could not write {path}: {message}")
    return path


def _write_atomically(path, state):
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    if not hasattr(state, "items"):
        raise TypeError(f"save_on_main: state must be a Module or a dict of arrays, got "
                        f"{type(state).__name__}")
    arrays = {}
    for name, value in state.items():
        array = np.asarray(value.data if isinstance(value, Var) else value)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"save_on_main: {name} has dtype {array.dtype}; only arrays of numbers are "
                            f"saved (no pickle)")
        arrays[str(name)] = array
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
