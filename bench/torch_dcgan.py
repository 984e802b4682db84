"""A PyTorch DCGAN with exactly genjax's architecture and training iteration, as a
speed reference for `bench/dcgan.py`.

Architecture (k = log2(image_size) - 2 up/down-samplings, as genjax.models.dcgan):

  Generator:      z -> Linear(no bias) -> view 4x4x(width·2^(k-1)) -> BN -> ReLU
                    -> [ConvTranspose2d(4, 2, 1, no bias) -> BN -> ReLU] x (k-1)
                    -> ConvTranspose2d(4, 2, 1, bias) -> tanh
  Discriminator:  x -> Conv2d(4, 2, 1, bias) -> LeakyReLU(0.2) [-> Dropout]
                    -> [Conv2d(4, 2, 1, no bias) -> BN -> LeakyReLU(0.2) [-> Dropout]] x (k-1)
                    -> flatten -> Linear(1)

(`width` is the generator's last hidden width; `d_width`, default `width`, the
discriminator's first; dropout only when `d_dropout` > 0, as genjax's model.d_dropout.)

BatchNorm momentum 0.1 (flax 0.9), eps 1e-5; weights N(0, 0.02), BN scale N(1, 0.02).

One iteration, as genjax.tasks.gan.train_step with d_steps_per_g_step=1:
  1. D step: a fresh z, G forward in training mode without gradients, D on the real
     batch then on the (detached) fake batch, BCE-with-logits, Adam step of D.
  2. G step: another fresh z, G forward, D forward (D's parameters frozen with
     requires_grad_(False), so no D weight gradients are computed), non-saturating
     BCE, Adam step of G.
  3. EMA of G's parameters and BatchNorm statistics (torch._foreach_lerp_).
Adam(2e-4, betas=(0.5, 0.999)) for both players.

    python bench/torch_dcgan.py --image_size=32 --channels=1 --width=32 --batch=64
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from windows import timed_windows  # noqa: E402  (bench/windows.py)


def num_doublings(image_size: int) -> int:
    """k such that image_size = 4·2^k (genjax.models.dcgan.num_doublings)."""
    k = int(math.log2(image_size)) - 2
    if 2 ** (k + 2) != image_size or not 1 <= k <= 5:
        raise ValueError(f"image_size must be a power of two from 8 to 128, got {image_size}.")
    return k


def _bn(features: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(features, momentum=0.1, eps=1e-5)


class Generator(nn.Module):
    """DCGAN generator: latent vector -> image in [-1, 1] (NCHW)."""

    def __init__(self, image_size: int, channels: int, width: int, latent_dim: int):
        super().__init__()
        k = num_doublings(image_size)
        features = width * 2 ** (k - 1)
        self.features = features
        self.fc = nn.Linear(latent_dim, 4 * 4 * features, bias=False)
        self.bn0 = _bn(features)
        blocks = []
        for _ in range(k - 1):
            blocks += [nn.ConvTranspose2d(features, features // 2, 4, 2, 1, bias=False),
                       _bn(features // 2), nn.ReLU(inplace=True)]
            features //= 2
        blocks += [nn.ConvTranspose2d(features, channels, 4, 2, 1, bias=True), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], self.features, 4, 4)
        x = F.relu(self.bn0(x), inplace=True)
        return self.blocks(x)


class Discriminator(nn.Module):
    """DCGAN discriminator: image (NCHW) -> one logit per image."""

    def __init__(self, image_size: int, channels: int, width: int, dropout: float = 0.0):
        super().__init__()
        k = num_doublings(image_size)
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        layers = [nn.Conv2d(channels, width, 4, 2, 1, bias=True),
                  nn.LeakyReLU(0.2, inplace=True), *drop]
        features = width
        for _ in range(k - 1):
            drop = [nn.Dropout(dropout)] if dropout > 0 else []
            layers += [nn.Conv2d(features, features * 2, 4, 2, 1, bias=False),
                       _bn(features * 2), nn.LeakyReLU(0.2, inplace=True), *drop]
            features *= 2
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(features * 4 * 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))[:, 0]


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) weights, zero biases, BN scale N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _adam(params):
    # foreach=True: the multi-tensor implementation (PyTorch's fastest non-fused path on CPU).
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999), foreach=True)


class DCGANTrainer:
    """Both players, their optimisers, the EMA copy of G, and one training iteration."""

    def __init__(self, image_size: int, channels: int, width: int, latent_dim: int,
                 batch: int, ema_decay: float = 0.999, seed: int = 0,
                 d_width: int | None = None, d_dropout: float = 0.0, device: str = "cpu"):
        torch.manual_seed(seed)
        self.batch, self.latent_dim, self.ema_decay = batch, latent_dim, ema_decay
        self.device = torch.device(device)
        self.G = Generator(image_size, channels, width, latent_dim).to(self.device)
        self.D = Discriminator(image_size, channels, d_width or width, d_dropout).to(self.device)
        dcgan_init(self.G)
        dcgan_init(self.D)
        self.G.train()
        self.D.train()
        self.g_opt = _adam(self.G.parameters())
        self.d_opt = _adam(self.D.parameters())
        # EMA of G's parameters and floating-point buffers (BN running statistics).
        self._g_tensors = [p for p in self.G.parameters()] + [
            b for b in self.G.buffers() if b.is_floating_point()]
        self._ema = [t.detach().clone() for t in self._g_tensors]
        self.ones = torch.ones(batch, device=self.device)
        self.zeros = torch.zeros(batch, device=self.device)
        self.step = 0

    def train_step(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One D update on real + fake, one G update, one EMA update; returns the losses."""
        G, D = self.G, self.D
        # 1. Discriminator.
        with torch.no_grad():
            fake = G(torch.randn(self.batch, self.latent_dim, device=self.device))
        self.d_opt.zero_grad(set_to_none=True)
        real_logits = D(real)
        fake_logits = D(fake)
        d_loss = (F.binary_cross_entropy_with_logits(real_logits, self.ones)
                  + F.binary_cross_entropy_with_logits(fake_logits, self.zeros))
        d_loss.backward()
        self.d_opt.step()
        # 2. Generator, through a frozen discriminator (no D weight gradients).
        D.requires_grad_(False)
        self.g_opt.zero_grad(set_to_none=True)
        logits = D(G(torch.randn(self.batch, self.latent_dim, device=self.device)))
        g_loss = F.binary_cross_entropy_with_logits(logits, self.ones)
        g_loss.backward()
        self.g_opt.step()
        D.requires_grad_(True)
        # 3. EMA with the same decay warm-up as genjax.
        decay = min(self.ema_decay, (1.0 + self.step) / (10.0 + self.step))
        with torch.no_grad():
            torch._foreach_lerp_(self._ema, self._g_tensors, 1.0 - decay)
        self.step += 1
        return d_loss.detach(), g_loss.detach()


def benchmark(image_size: int, channels: int, width: int, batch: int, latent_dim: int,
              steps: int, warmup: int, windows: int = 5, threads: int | None = None,
              d_width: int | None = None, d_dropout: float = 0.0) -> float:
    """Steady-state training iterations per second of the PyTorch DCGAN.

    Runs `warmup` untimed iterations, then `steps` timed iterations split into
    `windows` equal windows, and returns the median of the windows' rates (a window
    during which other processes used the CPU is repeated, see bench/windows.py).
    The batch is a fixed synthetic tensor in [-1, 1]; `threads` defaults to the
    machine's cores. `width` is both players' width unless `d_width` is given.
    """
    return benchmark_detail(image_size, channels, width, batch, latent_dim, steps, warmup,
                            windows, threads, d_width, d_dropout)["steps_per_sec"]


def benchmark_detail(image_size: int, channels: int, width: int, batch: int, latent_dim: int,
                     steps: int, warmup: int, windows: int = 5, threads: int | None = None,
                     d_width: int | None = None, d_dropout: float = 0.0,
                     device: str = "cpu") -> dict:
    """As `benchmark`, returning a dict: steps_per_sec, window_rates, first_step_s and
    the window details of `windows.timed_windows`. `device` 'cuda' runs on the GPU (with
    cuDNN's autotuner on); each window ends by reading the losses, which waits for it."""
    torch.set_num_threads(threads or os.cpu_count() or 1)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    trainer = DCGANTrainer(image_size, channels, width, latent_dim, batch, d_width=d_width,
                           d_dropout=d_dropout, device=device)
    real = torch.rand(batch, channels, image_size, image_size, device=device) * 2 - 1
    t0 = time.perf_counter()
    trainer.train_step(real)
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        trainer.train_step(real)

    def run_steps(n: int) -> None:
        for _ in range(n):
            d_loss, g_loss = trainer.train_step(real)
        float(d_loss + g_loss)  # reading the result waits for the window's work (GPU too)

    result = timed_windows(run_steps, max(1, steps // windows), windows)
    return {**result, "first_step_s": first, "threads": torch.get_num_threads(),
            "torch_version": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--width", type=int, default=32, help="generator width")
    p.add_argument("--d_width", type=int, default=0, help="discriminator width (0: --width)")
    p.add_argument("--d_dropout", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--latent_dim", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    a = p.parse_args()
    r = benchmark_detail(a.image_size, a.channels, a.width, a.batch, a.latent_dim, a.steps,
                         a.warmup, d_width=a.d_width or None, d_dropout=a.d_dropout,
                         device=a.device)
    print(f"torch {r['torch_version']}, {r['threads']} threads: {r['steps_per_sec']:.2f} steps/s "
          f"({r['steps_per_sec'] * a.batch:.0f} images/s); windows "
          + ", ".join(f"{x:.2f}" for x in r["window_rates"])
          + f"; {r['windows_discarded']} busy windows repeated"
          + (" (machine never quiet: figure unreliable)" if r["noisy"] else ""))


if __name__ == "__main__":
    main()
