"""Helpers of the bench tests (tests/test_bench_*.py): load a bench script as a module,
count a pytree's parameters, find an interpreter with PyTorch, and run a bench end to end
as it is meant to run (one CPU device)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_bench(name: str):
    """bench/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def torch_python() -> str:
    """An interpreter with torch and numpy ($GENJAX_TORCH_PYTHON, /tmp/torchenv/bin/python
    or this one); skips the test where none has them."""
    candidates = [os.environ.get("GENJAX_TORCH_PYTHON", ""), "/tmp/torchenv/bin/python",
                  sys.executable]
    for python in candidates:
        if python and os.path.exists(python) and subprocess.run(
                [python, "-c", "import torch, numpy"], capture_output=True).returncode == 0:
            return python
    pytest.skip("no interpreter with torch and numpy (set GENJAX_TORCH_PYTHON)")


def run_bench(name: str, shape: str, torch: str, out: pathlib.Path,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs bench/<name>.py at `shape` as briefly as it goes (1 thread, exactly 2 pairs of
    ~0.2 s windows, no waiting for quiet; everything to the JSON file `out`), on one CPU
    device as the bench is meant to run (the tests' conftest asks XLA for 8)."""
    flags = os.environ.get("XLA_FLAGS", "").replace(
        "--xla_force_host_platform_device_count=8", "")
    env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS=flags)
    args = [f"--torch_python={torch}", f"--shapes={shape}", "--threads=1", "--repeats=2",
            "--max_pairs=2", "--warmup=1", "--window_seconds=0.2", "--quiet_wait=0",
            f"--json={out}"]
    return subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
