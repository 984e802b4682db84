"""A plain PyTorch training command of the same shape as `python train.py` with a DCGAN
config: the PyTorch side of `bench/whole_command.py`.

    python bench/torch_train.py --data=digits_train.npz --workdir=DIR --steps=1000 \
        --image_size=32 --g_width=32 --d_width=32 --batch=64 \
        --log_every=200 --sample_every=1000 --checkpoint_every=1000

What a PyTorch user would write, start to end: load the training images (uint8 NHWC, the
same records as genjax's TFDS split, exported by bench/whole_command.py), a `Dataset`
that resizes each image (bilinear, antialiased) and scales it to [-1, 1], a shuffling
`DataLoader` (drop_last, a new order every epoch), and a loop of the DCGAN iteration of
`bench/torch_dcgan.py` (same layers, initialisation, BatchNorm, Adam(betas 0.5, 0.999),
EMA of G), which:
  * after the first step prints "First step took ...", and every `log_every` steps (and
    at the last) reads the losses and prints `step K/N`, as train.py's loop does;
  * every `sample_every` steps (and at the last) draws a fixed-noise grid with the EMA
    generator in eval mode and writes it as <workdir>/samples/step_<K>.png;
  * every `checkpoint_every` steps (and at the last) saves G, D, both optimisers, the
    EMA and the step with torch.save, keeping the newest `keep` checkpoints.
Its log lines are what bench/whole_command.py times ("First step" and "step N/N").
Needs torch, numpy and pillow.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_dcgan import DCGANTrainer  # noqa: E402  (bench/torch_dcgan.py)


class Images(torch.utils.data.Dataset):
    """uint8 [N, H, W, C] images -> float32 CHW in [-1, 1] at `size` x `size`."""

    def __init__(self, images: np.ndarray, size: int):
        self.images, self.size = torch.from_numpy(images), size

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        x = self.images[index].permute(2, 0, 1).float()[None] / 127.5 - 1.0
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x[0]


def batches(loader):
    """Batches forever, a new shuffle each epoch."""
    while True:
        yield from loader


def save_grid(images: torch.Tensor, path: Path) -> None:
    """NCHW in [-1, 1] -> one PNG grid, about square, 2-pixel gaps."""
    n, c, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    grid = np.zeros((rows * (h + 2), cols * (w + 2), c), np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * (h + 2):r * (h + 2) + h, k * (w + 2):k * (w + 2) + w] = x[i]
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)


def ema_generator(trainer: DCGANTrainer, g_ema: torch.nn.Module) -> torch.nn.Module:
    """`g_ema` holding the trainer's EMA parameters and BatchNorm statistics, in eval mode."""
    tensors = list(g_ema.parameters()) + [b for b in g_ema.buffers() if b.is_floating_point()]
    with torch.no_grad():
        for target, value in zip(tensors, trainer._ema):
            target.copy_(value)
    return g_ema.eval()


def save_checkpoint(trainer: DCGANTrainer, folder: Path, step: int, keep: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {"G": trainer.G.state_dict(), "D": trainer.D.state_dict(),
             "g_opt": trainer.g_opt.state_dict(), "d_opt": trainer.d_opt.state_dict(),
             "ema": trainer._ema, "step": step}
    tmp = folder / f"step_{step:06d}.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(folder / f"step_{step:06d}.pt")  # atomic, as orbax's commit
    for old in sorted(folder.glob("step_*.pt"))[:-keep]:
        old.unlink()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help=".npz with 'image': uint8 [N, H, W, C]")
    p.add_argument("--workdir", required=True)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--g_width", type=int, default=32)
    p.add_argument("--d_width", type=int, default=32)
    p.add_argument("--d_dropout", type=float, default=0.0)
    p.add_argument("--latent_dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--log_every", type=int, default=200)
    p.add_argument("--sample_every", type=int, default=1000)
    p.add_argument("--checkpoint_every", type=int, default=1000)
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    p.add_argument("--num_samples", type=int, default=64, help="images in a sample grid")
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    workdir = Path(a.workdir)
    (workdir / "samples").mkdir(parents=True, exist_ok=True)
    with np.load(a.data, allow_pickle=False) as npz:
        images = npz["image"]
    loader = torch.utils.data.DataLoader(
        Images(images, a.image_size), batch_size=a.batch, shuffle=True, drop_last=True,
        num_workers=a.num_workers, generator=torch.Generator().manual_seed(a.seed))
    trainer = DCGANTrainer(a.image_size, images.shape[-1], a.g_width, a.latent_dim, a.batch,
                           seed=a.seed, d_width=a.d_width, d_dropout=a.d_dropout)
    g_ema = copy.deepcopy(trainer.G)
    noise = torch.randn(a.num_samples, a.latent_dim,
                        generator=torch.Generator().manual_seed(a.seed + 1))
    print(f"Training the PyTorch DCGAN on {images.shape[0]} images at {a.image_size}x"
          f"{a.image_size} for {a.steps} steps; workdir {workdir}", flush=True)

    data = batches(loader)
    start = time.perf_counter()
    for step in range(1, a.steps + 1):
        d_loss, g_loss = trainer.train_step(next(data))
        last = step == a.steps
        if step == 1:
            float(d_loss)  # waits for the step, as train.py's loop does before this line
            print(f"First step took {time.perf_counter() - start:.1f}s.", flush=True)
        if step % a.log_every == 0 or last:
            print(f"step {step}/{a.steps}  | d/loss {float(d_loss):.4g}  "
                  f"g/loss {float(g_loss):.4g}", flush=True)
        if step % a.sample_every == 0 or last:
            with torch.no_grad():
                grid = ema_generator(trainer, g_ema)(noise)
            save_grid(grid, workdir / "samples" / f"step_{step:06d}.png")
        if step % a.checkpoint_every == 0 or last:
            save_checkpoint(trainer, workdir / "checkpoints", step, a.keep)


if __name__ == "__main__":
    main()
