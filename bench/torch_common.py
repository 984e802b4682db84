"""What bench/torch_pix2pix.py and bench/torch_cyclegan.py share: the reference's
initialisation, parameter counts, and the timing of a trainer's step in windows that
notice other processes (bench/windows.py), with its one-line report."""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from windows import timed_windows  # noqa: E402  (bench/windows.py)


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """The reference's 'normal' initialisation (networks.init_weights, init_type='normal')."""
    for m in net.modules():
        name = type(m).__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name
                                                               or "Linear" in name):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def time_trainer(trainer, a: torch.Tensor, b: torch.Tensor, steps: int, warmup: int,
                 windows: int) -> dict:
    """Times `trainer.train_step(a, b)` -> (d_loss, g_loss): the first step, `warmup` - 1
    more untimed, then `windows` windows of steps // windows steps (bench/windows.py)."""
    t0 = time.perf_counter()
    float(sum(trainer.train_step(a, b)))
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        trainer.train_step(a, b)

    def run_steps(n: int) -> None:
        for _ in range(n):
            d_loss, g_loss = trainer.train_step(a, b)
        float(d_loss + g_loss)  # waits for the window's work (GPU too)

    result = timed_windows(run_steps, max(1, steps // windows), windows)
    return {**result, "first_step_s": first, "threads": torch.get_num_threads(),
            "torch_version": torch.__version__}


def report(r: dict, params_note: str = "") -> str:
    """The one line a stand-alone run prints about time_trainer's result."""
    return (f"torch {r['torch_version']}, {r['threads']} threads; G {r['g_params']:,} params, "
            f"D {r['d_params']:,}{params_note}: {r['steps_per_sec']:.3f} steps/s; windows "
            + ", ".join(f"{x:.3f}" for x in r["window_rates"])
            + f"; {r['windows_discarded']} busy windows repeated"
            + (" (machine never quiet: figure unreliable)" if r["noisy"] else ""))
