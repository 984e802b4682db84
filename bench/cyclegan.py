"""CycleGAN training speed of genjax against PyTorch, side by side in one run.

    python bench/cyclegan.py --torch_python=/tmp/torchenv/bin/python
    python bench/cyclegan.py --torch_python=... --shapes=default --repeats=9 --json=out.json
    nice -n 10 python bench/cyclegan.py --torch_python=...    # beside other work

One step is the whole CycleGAN iteration, in the reference's order: G(a), F(G(a)), F(b),
G(F(b)), the identity images G(b), F(a), the generators' update on the LSGAN + 10·cycle +
5·identity loss (one Adam over both generators), then the fakes through the two image
pools (50 each) and the discriminators' update on real images against pooled fakes (one
Adam over both), Adam 2e-4 β1 0.5, on a fixed synthetic batch already on the device. Two
sides, each a fresh process that builds its models and warms up first:

  genjax   the cyclegan task itself (`genjax.tasks.make`), its `train_step` `pmap`ped on 1
           device as the training loop runs it (`genjax.parallel.pmap`)
  torch    `bench/torch_cyclegan.py` under --torch_python: the ResnetGenerator,
           NLayerDiscriminator, ImagePool and `optimize_parameters` of
           junyanz/pytorch-CycleGAN-and-pix2pix, eager

Shapes:
  resnet256  the reference's CycleGAN and the README's horse2zebra command: 256x256 RGB,
             resnet_9blocks (ngf 64), the 70x70 PatchGAN (3 layers, ndf 64), instance norm,
             batch 1. genjax's generic config check allows images up to 128x128 only, so this
             shape runs the task's own checks (`genjax.tasks.cyclegan.validate`) only.
  default    configs/cyclegan.py as it is (16x16 grey digits, batch 16, ResNet-6 at ngf 16,
             a 2-layer PatchGAN at ndf 16, pools of 50).
  tiny       a smoke test (not run by default): 8x8 grey, batch 2, ResNet-1 at ngf 4, a
             1-layer PatchGAN at ndf 4, pools of 2 (so the pool's swapping runs at once).

Both sides build the same networks: genjax leaves the bias off every convolution an
instance norm follows (the norm cancels it), and so does the torch side (the reference has
them; `torch_cyclegan.py` says how many). Parameter counts of one generator and one
discriminator are printed for both sides; they must agree (a mismatch is an error in the
table). The genjax side also reports XLA's FLOP count of its compiled step.

After both sides are built and warmed up (first step = compilation for genjax; then
--warmup steps more, untimed), they alternate: a window of genjax steps, a window of torch
steps, again, --repeats pairs in all (bench/paired.py runs them, as for bench/pix2pix.py).
A window is about --window_seconds of steps (counted from each side's own warm step
time, at least one step) ended by a wait for the results. For every window the share of
the machine's CPU time other processes used is measured (/proc/stat minus this worker's
own CPU time, as bench/windows.py); a pair with a window above 5% is disturbed and
another pair is run in its place, after waiting up to --quiet_wait s for quiet, until
--repeats quiet pairs or --max_pairs (3·--repeats) pairs in all. The figures: min /
median / max of each side's steps/s, of its own CPU-seconds per step, and of the
pair-by-pair ratios genjax/torch of both (> 1: genjax faster), over the quiet pairs (over
all pairs, marked disturbed, when fewer than --repeats were quiet).

Both sides run on the same --threads CPUs (default: all of this machine's): the workers
are pinned to CPUs 0..threads-1 (XLA sizes its thread pool from that), and PyTorch uses
that many intra-op threads.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import paired  # noqa: E402  (bench/paired.py, stdlib only)
from paired import (Bench, final_losses, genjax_steps, param_count,  # noqa: E402
                    torch_side)


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmarked CycleGAN: image side and channels (both domains), the ResNet
    generators' width and blocks, the PatchGANs' width and layers, batch, the game's
    weights and pool size."""

    name: str
    image_size: int
    channels: int
    ngf: int
    num_blocks: int
    ndf: int
    d_layers: int
    batch: int
    cycle_weight: float
    identity_weight: float
    pool_size: int

    def describe(self) -> str:
        return (f"{self.image_size}x{self.image_size}x{self.channels} both domains, ResNet-"
                f"{self.num_blocks} generators ngf {self.ngf}, PatchGANs {self.d_layers} layers "
                f"ndf {self.ndf}, batch {self.batch}, cycle {self.cycle_weight:g}, identity "
                f"{self.identity_weight:g}, pools {self.pool_size}")


SHAPES = ("resnet256", "default", "tiny")
DEFAULT_SHAPES = ("resnet256", "default")
# Parameter counts both sides report: G (A -> B), F (B -> A), D of domain B, D of domain A.
PARAM_KEYS = ("g_params", "g_ba_params", "d_params", "d_a_params")


# --- genjax side (runs under this interpreter) -----------------------------------------

def genjax_config(name: str):
    """The genjax config of a shape (module docstring), checked as far as it can be."""
    from genjax.tasks import cyclegan

    if name == "default":
        config = paired.repo_config("cyclegan")
    elif name == "resnet256":
        config = cyclegan.defaults()
        config.image_size = 256
        config.batch_size = 1
        m = config.model
        m.generator, m.ngf, m.num_blocks, m.ndf, m.d_layers = "resnet", 64, 9, 64, 3
        cyclegan.validate(config)  # the task's checks (the generic one stops at 128x128)
    elif name == "tiny":
        config = cyclegan.defaults()
        config.image_size, config.batch_size, config.pool_size = 8, 2, 2
        m = config.model
        m.generator, m.ngf, m.num_blocks, m.ndf, m.d_layers = "resnet", 4, 1, 4, 1
        from genjax import tasks
        tasks.validate(config, num_devices=1)
    else:
        raise ValueError(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")
    refuse_unmirrored(config)
    return config


def refuse_unmirrored(config) -> None:
    """Exits with a message if the config departs from what the torch side implements."""
    reference = {"model.generator": "resnet", "loss": "least_squares", "cycle": "both",
                 "model.dtype": "float32"}
    given = {"model.generator": config.model.generator, "loss": config.loss,
             "cycle": config.cycle, "model.dtype": config.model.dtype}
    unmirrored = {k: v for k, v in given.items() if v != reference[k]}
    if config.cycle_weight <= 0:
        unmirrored["cycle_weight"] = config.cycle_weight
    if unmirrored:
        raise SystemExit(f"error: the torch side is the reference CycleGAN; this config departs "
                         f"from it in {unmirrored}.")


def config_shape(name: str, config, channels: int) -> Shape:
    m = config.model
    return Shape(name, config.image_size, channels, m.ngf, m.num_blocks, m.ndf, m.d_layers,
                 config.batch_size, float(config.cycle_weight), float(config.identity_weight),
                 config.pool_size)


def shape_channels(name: str) -> int:
    return 3 if name == "resnet256" else 1  # digits_style is grey


def genjax_worker(name: str):
    """Builds the task, compiles and warms up its step; returns (ready info, run_steps)."""
    import types

    import jax
    import numpy as np

    from genjax import parallel, tasks

    channels = shape_channels(name)
    config = genjax_config(name)
    shape = config_shape(name, config, channels)
    s = shape.image_size
    meta = types.SimpleNamespace(name="synthetic", image_channels={"a": channels, "b": channels},
                                 image_shape=(s, s, channels))
    task = tasks.make(config, meta)
    host_state = task.init(config.seed)
    params_g = host_state.generators.params
    params_d = host_state.discriminators.params
    counts = {"g_params": param_count(params_g["g_ab"]),
              "g_ba_params": param_count(params_g["g_ba"]),
              "d_params": param_count(params_d["d_b"]),
              "d_a_params": param_count(params_d["d_a"])}
    n = parallel.device_count()
    if shape.batch % n:
        raise SystemExit(f"error: the batch of {shape.batch} does not split over {n} devices; "
                         "run the bench on one (e.g. without "
                         "--xla_force_host_platform_device_count in XLA_FLAGS).")
    state = parallel.replicate(host_state)
    del host_state
    rng = np.random.default_rng(0)
    batch = parallel.shard({
        "a": rng.uniform(-1, 1, (n, shape.batch // n, s, s, channels)).astype(np.float32),
        "b": rng.uniform(-1, 1, (n, shape.batch // n, s, s, channels)).astype(np.float32)})
    t0 = time.perf_counter()
    # Compiled ahead of time (the same program the training loop runs) to read XLA's
    # FLOP count of the step from the very executable that is timed.
    step = parallel.pmap(task.train_step).lower(state, batch).compile()
    cost = step.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    run_steps, holder = genjax_steps(step, state, batch)
    run_steps(1)
    compile_s = time.perf_counter() - t0
    final = final_losses(holder, ("d/loss", "g/loss", "cycle/a", "cycle/b"))
    return ({"shape": dataclasses.asdict(shape), "first_step_s": compile_s, "devices": n,
             "xla_gflop": float(cost.get("flops", float("nan"))) / 1e9,
             "version": f"jax {jax.__version__}", **counts}, run_steps, final)


# --- torch side (runs under --torch_python) ---------------------------------------------

def torch_worker(shape: dict, device: str = "cpu"):
    import torch_cyclegan as tc

    s = Shape(**shape)
    trainer = tc.CycleGANTrainer(s.channels, s.ngf, s.num_blocks, s.ndf, s.d_layers,
                                 cycle_weight=s.cycle_weight, identity_weight=s.identity_weight,
                                 pool_size=s.pool_size, device=device)
    a, b = tc.make_batch(s.batch, s.image_size, s.channels, device)
    return torch_side(trainer, a, b, shape, {
        "g_params": tc.count_params(trainer.G_A), "g_ba_params": tc.count_params(trainer.G_B),
        "d_params": tc.count_params(trainer.D_A), "d_a_params": tc.count_params(trainer.D_B)})


# --- The driver --------------------------------------------------------------------------

BENCH_SPEC = Bench(
    script=pathlib.Path(__file__).resolve(), doc=__doc__, shapes=SHAPES,
    default_shapes=DEFAULT_SHAPES, shape_cls=Shape, genjax_worker=genjax_worker,
    torch_worker=torch_worker, param_keys=PARAM_KEYS,
    genjax_ready=lambda r: (f", {r['xla_gflop']:,.1f} GFLOP/step (XLA); G {r['g_params']:,} "
                            f"params, F {r['g_ba_params']:,}, D_b {r['d_params']:,}, D_a "
                            f"{r['d_a_params']:,}"),
    torch_ready=lambda r: (f"; G_A {r['g_params']:,} params, G_B {r['g_ba_params']:,}, D_A "
                           f"{r['d_params']:,}, D_B {r['d_a_params']:,}"),
    columns=(("GFLOP/step", lambda r: f"{r['genjax']['xla_gflop']:,.1f}"),))


def main(argv=None) -> None:
    paired.main(BENCH_SPEC, argv)


if __name__ == "__main__":
    main()
