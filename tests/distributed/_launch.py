"""Start a worker script under mpiexec (or skip, saying why, where MPI is not installed)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def mpiexec():
    """The mpiexec next to this Python (the mpich wheel installs it there), else on PATH."""
    import importlib.util
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip('mpi4py is not installed: pip install -e ".[mpi]" runs these tests')
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpiexec is not installed (pip install mpich provides one)")
    return found


def environment():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MV2_", "SLURM_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"                 # ranks share 2 cores; BLAS threads would oversubscribe them
    return env


def launch(n, script, *args, timeout=60):
    """Run ``script`` on ``n`` processes; the CompletedProcess (stdout and stderr as text)."""
    command = [mpiexec(), "-n", str(n), sys.executable, str(script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment(),
                          cwd=str(ROOT))
