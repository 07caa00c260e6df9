"""Data-parallel training: DistributedDataParallel.

Every process holds a replica of the model and trains on its own shard of each batch
(``neuronika.data.DistributedSampler``); after each ``backward()`` the gradients are
averaged over the processes, so that every replica takes the same optimizer step::

    model = DistributedDataParallel(MLP())          # parameters copied from rank 0
    for x, y in loader:                             # this rank's shard
        loss = F.cross_entropy(model(x), y)
        loss.backward()                             # starts the all-reduces
        optimizer.step()                            # waits for them, then steps
        optimizer.zero_grad()

>>> import numpy as np
>>> import neuronika
>>> from neuronika import nn
>>> model = nn.DistributedDataParallel(nn.Linear(3, 1, dtype=np.float64))
>>> model(np.ones((4, 3))).mean().backward()
>>> model.module.bias.grad                          # one process: its own gradient
array([1.])
"""
from __future__ import annotations

import contextlib
import weakref

import numpy as np

from .. import distributed
from ..variable import Param, defer_grad
from .module import Module

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters of one dtype whose gradients travel in one flat buffer. The buffer ends
    with one flag per parameter (1 where the rank has a gradient), so that a parameter no
    rank used keeps no gradient; after a reduction the gradients are views of it."""

    def __init__(self, dtype, nodes):
        self.nodes = nodes
        self.dtype = dtype
        self.count = sum(node.value.size for node in nodes)
        self.buffer = None                 # allocated by the first fill (never, in a world of one)
        self.views = []
        self.ready = 0
        self.request = None

    def _allocate(self):
        self.buffer = np.zeros(self.count + len(self.nodes), self.dtype)
        start = 0
        for node in self.nodes:
            self.views.append(self.buffer[start:start + node.value.size].reshape(node.shape))
            start += node.value.size

    def fill(self):
        if self.buffer is None:
            self._allocate()
        flags = self.buffer[self.count:]
        for k, (node, view) in enumerate(zip(self.nodes, self.views)):
            grad = node.grad
            if grad is None:
                view[...] = 0
                flags[k] = 0
            else:
                if grad is not view:
                    np.copyto(view, grad)
                flags[k] = 1

    def unpack(self, size):
        if size > 1:
            self.buffer[:self.count] /= size
        flags = self.buffer[self.count:]
        for k, (node, view) in enumerate(zip(self.nodes, self.views)):
            if flags[k] != 0:
                node.grad = view


class _Reducer:
    """Averages the gradients of ``params`` after each backward (see DistributedDataParallel)."""

    def __init__(self, world, params, cap_bytes):
        self.world = world
        self.enabled = True
        groups = []                        # [dtype, names, nodes, bytes], by their first parameter
        current = {}                       # dtype -> the group still open
        for name, p in params:
            node = p._node
            group = current.get(node.dtype)
            if group is None or (group[3] and group[3] + node.value.nbytes > cap_bytes):
                group = current[node.dtype] = [node.dtype, [], [], 0]
                groups.append(group)
            group[1].append(name)
            group[2].append(node)
            group[3] += node.value.nbytes
        self.buckets = [(tuple(names), _Bucket(dtype, nodes)) for dtype, names, nodes, _ in groups]
        self.bucket_of = {}
        for index, (_, bucket) in enumerate(self.buckets):
            for node in bucket.nodes:
                self.bucket_of[node] = index
        self.round_open = False
        self.launched = 0
        me = weakref.ref(self)

        def hook(param):                      # holds the reducer weakly: the model may outlive it
            reducer = me()
            if reducer is not None:
                reducer.gradient_ready(param._node)

        self.handles = [p.register_post_accumulate_grad_hook(hook) for _, p in params]
        weakref.finalize(self, _remove_hooks, list(self.handles))

    def gradient_ready(self, node):
        if not self.enabled:
            return
        if not self.round_open:
            self.round_open = True
            self.launched = 0
            for _, bucket in self.buckets:
                bucket.ready = 0
            for _, bucket in self.buckets:
                for other in bucket.nodes:
                    defer_grad(Param(other), self.finish)
        bucket = self.buckets[self.bucket_of[node]][1]
        bucket.ready += 1
        # Buckets start in the same order on every rank (MPI matches collectives by order).
        while self.launched < len(self.buckets) and self._full(self.launched):
            self._launch(self.launched)

    def _full(self, index):
        bucket = self.buckets[index][1]
        return bucket.ready >= len(bucket.nodes)

    def _launch(self, index):
        if self.world.size > 1:           # alone, the average is the gradient: nothing to copy
            bucket = self.buckets[index][1]
            bucket.fill()
            bucket.request = self.world.iallreduce(bucket.buffer, "sum")
        self.launched += 1

    def finish(self):
        """Start what has not started (parameters this backward did not reach), wait for every
        bucket, and leave the averages as the gradients."""
        if not self.round_open:
            return
        self.round_open = False
        while self.launched < len(self.buckets):
            self._launch(self.launched)
        if self.world.size == 1:
            return
        self.world.waitall(bucket.request for _, bucket in self.buckets)
        for _, bucket in self.buckets:
            bucket.request = None
            bucket.unpack(self.world.size)



def _remove_hooks(handles):
    for handle in handles:
        handle.remove()


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training over the processes of
    ``neuronika.distributed`` (one process: the module's own gradients).

    When built, it checks that every rank built the same model (parameter and buffer names,
    shapes, dtypes: a difference raises on every rank, naming the parameter) and copies
    rank 0's parameters and buffers to the others. Calling it calls ``module`` (in training
    mode, buffers such as batch-norm statistics are copied from rank 0 first; in eval mode
    it communicates nothing, so one rank may evaluate alone). ``state_dict()``,
    ``load_state_dict()``, ``parameters()``, ``named_parameters()``, ``save()``, ``train()``,
    ``eval()`` and ``zero_grad()`` are the module's (same names, no prefix); ``.module`` is
    the module.

    After each ``backward()`` the gradients are averaged over the ranks: they are grouped
    into buckets of at most ``bucket_cap_mb`` megabytes (MiB) per dtype, copied into one flat
    buffer per bucket and reduced with non-blocking ``Iallreduce``. All the gradients of one
    backward are produced by one generated program, so they become final together: the
    buckets start right after it, one after the other, and the reduction overlaps only with
    what runs before the gradients are read. Reading a gradient (``.grad``, the optimizer's
    ``step()``, clipping, ``zero_grad()``, the next ``backward()``) waits for the reduction;
    the averaged gradients are views of the bucket buffers (no copy back). With MPICH the
    transfer progresses mostly inside that wait (``MPICH_ASYNC_PROGRESS=1`` gives it a
    thread of its own).

    Every rank must run the same number of backwards through the model (a rank that skips
    one leaves the others waiting). A parameter that a backward did not reach on some rank
    counts as a zero gradient there; one that no rank reached keeps no gradient.

    >>> import numpy as np
    >>> from neuronika import nn
    >>> model = nn.DistributedDataParallel(nn.Linear(4, 2), bucket_cap_mb=1)
    >>> model.buckets
    [('weight', 'bias')]
    >>> list(model.state_dict()) == list(model.module.state_dict())
    True
    """

    def __init__(self, module: Module, bucket_cap_mb: float = 25, broadcast_buffers: bool = True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expects an nn.Module, got {type(module).__name__}")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a number > 0, got "
                             f"{bucket_cap_mb!r}")
        self.module = module
        object.__setattr__(self, "bucket_cap_mb", bucket_cap_mb)
        object.__setattr__(self, "broadcast_buffers", bool(broadcast_buffers))
        world = distributed._get()
        params = module.named_parameters()
        buffers = [(name, owner, attr) for name, owner, attr in module._named_buffers()
                   if getattr(owner, attr) is not None]
        if world.size > 1:
            mine = [(name, p.dtype.str, p.shape) for name, p in params]
            mine += [(name, getattr(owner, attr).dtype.str, getattr(owner, attr).shape)
                     for name, owner, attr in buffers]
            everyone = world.allgather_object(mine)
            if any(theirs != mine for theirs in everyone):
                distributed._raise_mismatch("DistributedDataParallel", everyone, "parameter",
                                            "build the same model (same layers, sizes and dtypes)")
            distributed.broadcast([p for _, p in params] + [getattr(o, a) for _, o, a in buffers],
                                  root=0, check=False)
        object.__setattr__(self, "_world", world)
        object.__setattr__(self, "_buffer_names", buffers)
        object.__setattr__(self, "_reducer", _Reducer(world, params, int(bucket_cap_mb * 1024 * 1024)))

    # ---- the module's face ---------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self.training and self.broadcast_buffers and self._world.size > 1 and self._buffer_names:
            arrays = [getattr(owner, attr) for _, owner, attr in self._buffer_names]
            distributed.broadcast([a for a in arrays if a is not None], root=0, check=False)
        return self.module(*args, **kwargs)

    def _named_leaves(self, prefix=""):
        return self.module._named_leaves(prefix)

    def _named_buffers(self, prefix=""):
        return self.module._named_buffers(prefix)

    def to(self, dtype):
        raise TypeError("DistributedDataParallel.to: convert the module before wrapping it "
                        "(DistributedDataParallel(model.to(dtype))): the gradient buckets are "
                        "built for the parameters it had")

    @property
    def buckets(self) -> list:
        """The parameter names of each gradient bucket, in the order they are reduced."""
        return [names for names, _ in self._reducer.buckets]

    # ---- gradient accumulation ------------------------------------------------------------------
    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backwards only accumulate gradients locally; the first backward after
        the block averages everything accumulated (the big batch's gradient, with equal
        micro-batches and mean losses: scale each micro-batch's loss by 1 / their number).

        >>> import numpy as np
        >>> from neuronika import nn
        >>> model = nn.DistributedDataParallel(nn.Linear(2, 1, dtype=np.float64))
        >>> with model.no_sync():
        ...     model(np.ones((1, 2))).sum().backward()
        >>> model(np.ones((1, 2))).sum().backward()
        >>> model.module.bias.grad
        array([2.])
        """
        reducer = self._reducer
        previous = reducer.enabled
        reducer.enabled = False
        try:
            yield self
        finally:
            reducer.enabled = previous

    def extra_repr(self) -> str:
        return (f"world_size={self._world.size}, bucket_cap_mb={self.bucket_cap_mb}, "
                f"{len(self._reducer.buckets)} bucket(s)")
