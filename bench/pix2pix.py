"""pix2pix training speed of genjax against PyTorch, side by side in one run.

    python bench/pix2pix.py --torch_python=/tmp/torchenv/bin/python
    python bench/pix2pix.py --torch_python=... --shapes=default --repeats=9 --json=out.json
    nice -n 10 python bench/pix2pix.py --torch_python=...    # beside other work

One step is the whole pix2pix iteration: D's update on (input, target) real vs (input,
G(input)) fake, the loss halved, then G's update with the adversarial + 100·L1 loss against
the updated D, each with Adam (2e-4, β1 0.5), on a fixed synthetic batch already on the
device. Two sides, each a fresh process that builds its models and warms up first:

  genjax   the pix2pix task itself (`genjax.tasks.make`), its `train_step` `pmap`ped on 1
           device as the training loop runs it (`genjax.parallel.pmap`)
  torch    `bench/torch_pix2pix.py` under --torch_python: the U-Net and PatchGAN of
           junyanz/pytorch-CycleGAN-and-pix2pix and its `optimize_parameters`, eager

Shapes:
  unet256  the reference's pix2pix: 256x256 RGB -> RGB, unet_256 (8 levels, ngf 64, dropout
           in its 3 ngf·8 decoder blocks), the 70x70 PatchGAN (3 layers, ndf 64), BatchNorm,
           batch 1. genjax's generic config check allows images up to 128x128 only, so this
           shape runs the task's own checks (`genjax.tasks.pix2pix.validate`) but not that one.
  default  configs/pix2pix.py as it is (grey -> colour, 1 -> 3 channels): its image size,
           batch, U-Net levels, widths, dropout blocks, PatchGAN layers and norm.

After both sides are built and warmed up (first step = compilation for genjax; then
--warmup steps more, untimed), they alternate: a window of genjax steps, a window of torch
steps, again, --repeats pairs in all (bench/paired.py runs them, as for bench/cyclegan.py).
A window is about --window_seconds of steps (counted from each side's own warm step time,
at least one step) ended by a wait for the results. For every window the share of the
machine's CPU time other processes used is measured (/proc/stat minus this worker's own
CPU time, as bench/windows.py); a pair with a window above 5% is disturbed and another
pair is run in its place, after waiting up to --quiet_wait s for quiet, until --repeats
quiet pairs or --max_pairs (3·--repeats) pairs in all. The figures: min / median / max of
each side's steps/s, of its own CPU-seconds per step, and of the pair-by-pair ratios
genjax/torch of both (> 1: genjax faster), over the quiet pairs (over all pairs, marked
disturbed, when fewer than --repeats were quiet).

Both sides run on the same --threads CPUs (default: all of this machine's): the workers
are pinned to CPUs 0..threads-1 (XLA sizes its thread pool from that), and PyTorch uses
that many intra-op threads. Parameter counts of G and D are printed for both sides; they
must agree (a mismatch is reported as an error in the table).
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
    """One benchmarked pix2pix: sizes and channels, U-Net levels and first width, its
    dropout blocks (resolved: a count), PatchGAN layers and first width, norm, batch."""

    name: str
    image_size: int
    in_channels: int
    out_channels: int
    num_downs: int
    ngf: int
    dropout_blocks: int
    n_layers: int
    ndf: int
    norm: str
    batch: int

    def describe(self) -> str:
        return (f"{self.image_size}x{self.image_size}, {self.in_channels} -> "
                f"{self.out_channels} channels, U-Net {self.num_downs} levels ngf "
                f"{self.ngf} (dropout in {self.dropout_blocks} decoder blocks), PatchGAN "
                f"{self.n_layers} layers ndf {self.ndf}, {self.norm} norm, batch {self.batch}")


SHAPES = ("unet256", "default")


# --- genjax side (runs under this interpreter) -----------------------------------------

def genjax_config(name: str):
    """The genjax config of a shape (module docstring), checked as far as it can be."""
    from genjax.tasks import pix2pix

    if name == "default":
        config = paired.repo_config("pix2pix")
    elif name == "unet256":
        config = pix2pix.defaults()
        config.image_size = 256
        config.batch_size = 1
        m = config.model
        m.num_downs, m.ngf, m.ndf, m.n_layers, m.norm = 8, 64, 64, 3, "batch"
        m.dropout_blocks = -1  # the reference's rule: 3 blocks in unet_256
        pix2pix.validate(config)  # the task's checks (the generic one stops at 128x128)
    else:
        raise ValueError(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")
    reference = {"model.skips": True, "model.conditional_d": True, "loss": "non_saturating"}
    given = {"model.skips": config.model.skips, "model.conditional_d": config.model.conditional_d,
             "loss": config.loss}
    unmirrored = {k: v for k, v in given.items() if v != reference[k]}
    if config.gan_weight <= 0:
        unmirrored["gan_weight"] = config.gan_weight
    if unmirrored:
        raise SystemExit(f"error: the torch side is the reference pix2pix; this config departs "
                         f"from it in {unmirrored}.")
    return config


def config_shape(name: str, config, in_channels: int, out_channels: int) -> Shape:
    from genjax.models.pix2pix import dropout_levels

    m = config.model
    return Shape(name, config.image_size, in_channels, out_channels, m.num_downs, m.ngf,
                 len(dropout_levels(m.num_downs, m.dropout_blocks)), m.n_layers, m.ndf,
                 m.norm, config.batch_size)


def genjax_worker(name: str):
    """Builds the task, compiles and warms up its step; returns (ready info, run_steps)."""
    import types

    import jax
    import numpy as np

    from genjax import parallel, tasks

    channels = (3, 3) if name == "unet256" else (1, 3)  # the default config: grey -> colour
    config = genjax_config(name)
    shape = config_shape(name, config, *channels)
    meta = types.SimpleNamespace(name="synthetic", image_channels={"input": channels[0],
                                                                   "target": channels[1]},
                                 image_shape=(shape.image_size, shape.image_size, channels[1]))
    task = tasks.make(config, meta)
    host_state = task.init(config.seed)
    counts = {"g_params": param_count(host_state.generator.params),
              "d_params": param_count(host_state.discriminator.params)}
    n = parallel.device_count()
    state = parallel.replicate(host_state)
    del host_state
    rng = np.random.default_rng(0)
    s = shape.image_size
    batch = parallel.shard({
        "input": rng.uniform(-1, 1, (n, shape.batch // n, s, s, channels[0])).astype(np.float32),
        "target": rng.uniform(-1, 1, (n, shape.batch // n, s, s, channels[1])).astype(np.float32)})
    step = parallel.pmap(task.train_step)
    run_steps, holder = genjax_steps(step, state, batch)
    t0 = time.perf_counter()
    run_steps(1)
    compile_s = time.perf_counter() - t0
    final = final_losses(holder, ("d/loss", "g/loss", "g/l1"))
    return ({"shape": dataclasses.asdict(shape), "first_step_s": compile_s, "devices": n,
             "version": f"jax {jax.__version__}", **counts}, run_steps, final)


# --- torch side (runs under --torch_python) ---------------------------------------------

def torch_worker(shape: dict, device: str = "cpu"):
    import torch_pix2pix as tp

    s = Shape(**shape)
    trainer = tp.Pix2PixTrainer(s.in_channels, s.out_channels, s.num_downs, s.ngf, s.ndf,
                                s.n_layers, s.norm, s.dropout_blocks, device=device)
    a, b = tp.make_batch(s.batch, s.image_size, s.in_channels, s.out_channels, device)
    return torch_side(trainer, a, b, shape, {"g_params": tp.count_params(trainer.G),
                                             "d_params": tp.count_params(trainer.D)})


# --- The driver --------------------------------------------------------------------------

BENCH_SPEC = Bench(
    script=pathlib.Path(__file__).resolve(), doc=__doc__, shapes=SHAPES, default_shapes=SHAPES,
    shape_cls=Shape, genjax_worker=genjax_worker, torch_worker=torch_worker,
    param_keys=("g_params", "d_params"),
    genjax_ready=lambda r: f"; G {r['g_params']:,} params, D {r['d_params']:,}",
    torch_ready=lambda r: f"; G {r['g_params']:,} params, D {r['d_params']:,}")


def main(argv=None) -> None:
    paired.main(BENCH_SPEC, argv)


if __name__ == "__main__":
    main()
