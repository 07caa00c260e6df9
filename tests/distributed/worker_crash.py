"""Run under mpiexec by test_mpi.py (``mpiexec -n 3 python worker_crash.py TMPDIR``): rank 1 raises in the middle of training while the
others wait in the gradient all-reduce; distributed.init()'s excepthook must abort them all."""
import os
import sys

import numpy as np

import neuronika
from neuronika import distributed, nn, optim
from neuronika.nn import functional as F


def main():
    distributed.init()
    with open(os.path.join(sys.argv[1], f"pid{distributed.rank()}"), "w") as handle:
        handle.write(str(os.getpid()))     # the test checks that every process is gone
    neuronika.manual_seed(0)
    model = nn.DistributedDataParallel(nn.Linear(4, 2, dtype=np.float64))
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    x, y = np.ones((4, 4)), np.array([0, 1, 0, 1])
    for step in range(5):
        if step == 2 and distributed.rank() == 1:
            raise RuntimeError("rank 1 fails on purpose")
        F.cross_entropy(model(x), y).backward()
        optimizer.step()                  # the other ranks wait here for rank 1's gradients
        optimizer.zero_grad()
    print("UNREACHABLE: the other ranks finished", flush=True)


if __name__ == "__main__":
    main()
