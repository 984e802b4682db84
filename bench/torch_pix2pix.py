"""pix2pix in PyTorch as the reference implementation writes it, as a speed reference for
`bench/pix2pix.py`: the U-Net generator and PatchGAN discriminator of
junyanz/pytorch-CycleGAN-and-pix2pix (`models/networks.py`: UnetGenerator,
UnetSkipConnectionBlock, NLayerDiscriminator) and one iteration of its
`Pix2PixModel.optimize_parameters` (`models/pix2pix_model.py`), re-written here.

Generator (U-Net with `depth` down-samplings; encoder widths w_i = ngf·min(2^i, 8), so
depth 8 and ngf 64 is the reference's `unet_256`), built from the inside out as nested
skip blocks. With norm = BatchNorm (affine, momentum 0.1, eps 1e-5) no convolution
before a norm has a bias:

  outermost  x -> Conv(in, w0, 4, 2, 1) -> [inner] -> ReLU
               -> ConvT(2·w0, out, 4, 2, 1, bias) -> tanh
  middle i   x -> LReLU(0.2) -> Conv(w_{i-1}, w_i) -> BN -> [inner] -> ReLU
               -> ConvT(2·w_i, w_{i-1}) -> BN [-> Dropout(0.5)]; output cat(x, that)
  innermost  x -> LReLU(0.2) -> Conv(w_{d-2}, w_{d-1}) (no norm: 1x1 at the bottleneck)
               -> ReLU -> ConvT(w_{d-1}, w_{d-2}) -> BN; output cat(x, that)

Dropout is on in the `dropout_blocks` middle blocks next to the innermost (the reference:
depth - 5 of them, i.e. 3 in `unet_256`, all of width ngf·8). The reference's
activations are in place, so the LeakyReLU at the start of a block also rewrites the `x`
its skip connection concatenates; this port keeps that. It changes nothing computed: the
concatenation goes straight into the outer level's ReLU, and ReLU(LeakyReLU(x)) = ReLU(x).

Discriminator (PatchGAN, `n_layers` = 3 gives 70x70 receptive fields), on
cat(input, output) channels:
  Conv(in, ndf, 4, 2, 1, bias) -> LReLU(0.2)
  -> [Conv(ndf·m', ndf·m, 4, 2, 1) -> BN -> LReLU(0.2)] for m = min(2^n, 8), n = 1..n_layers-1
  -> Conv(., ndf·min(2^n_layers, 8), 4, 1, 1) -> BN -> LReLU(0.2)
  -> Conv(., 1, 4, 1, 1, bias)          (a grid of logits: 30x30 for 256x256)

Weights N(0, 0.02), biases 0, BatchNorm scale N(1, 0.02), shift 0 (`init_weights`).
With norm = 'instance': InstanceNorm2d(affine=False, track_running_stats=True) and
biases on those convolutions, as the reference's `get_norm_layer('instance')`.

One iteration (`optimize_parameters`, gan_mode 'vanilla', lambda_L1 100, no image pool):
  fake = G(A)                                        (once, train mode: dropout on)
  D:  D(cat(A, fake.detach())) vs 0, D(cat(A, B)) vs 1, BCE-with-logits averaged over
      the patch grid, loss = (fake + real) / 2, backward, Adam step of D
  G:  D's parameters frozen (requires_grad False); D(cat(A, fake)) vs 1 (the updated D)
      + 100 · mean |fake - B|, backward, Adam step of G
Adam(2e-4, betas=(0.5, 0.999)) for both.

    python bench/torch_pix2pix.py                    # unet_256 + 70x70 PatchGAN, batch 1
    python bench/torch_pix2pix.py --image_size=32 --depth=5 --in_channels=1 --batch=16
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_common import count_params, init_weights, report, time_trainer  # noqa: E402,F401


def unet_widths(depth: int, ngf: int) -> list[int]:
    """Encoder output widths, outermost first: ngf·min(2^i, 8) (the reference's UnetGenerator)."""
    return [ngf * min(2 ** i, 8) for i in range(depth)]


def _norm(kind: str, features: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(features, affine=True, momentum=0.1, eps=1e-5)
    if kind == "instance":
        return nn.InstanceNorm2d(features, affine=False, track_running_stats=True)
    raise ValueError(f"norm must be 'batch' or 'instance', got {kind!r}.")


class SkipBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up; concatenated with its input
    (except the outermost level, which returns the image)."""

    def __init__(self, outer: int, inner: int, *, in_channels: int | None = None,
                 child: nn.Module | None = None, outermost: bool = False,
                 innermost: bool = False, norm: str = "batch", dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"  # a following BatchNorm's shift makes a bias redundant
        down_conv = nn.Conv2d(in_channels or outer, inner, 4, 2, 1, bias=bias)
        if outermost:
            layers = [down_conv, child, nn.ReLU(True),
                      nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down_conv, _norm(norm, inner), child,
                      nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias),
                      _norm(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # The in-place LeakyReLU inside self.model rewrites x before the concatenation
        # reads it, as in the reference (harmless: the outer level applies ReLU next).
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, depth: int = 8, ngf: int = 64,
                 norm: str = "batch", dropout_blocks: int | None = None,
                 widths: list[int] | None = None):
        super().__init__()
        w = widths or unet_widths(depth, ngf)
        if len(w) < 2:
            raise ValueError(f"a U-Net needs at least 2 levels, got {len(w)}.")
        d = len(w)
        if dropout_blocks is None:
            dropout_blocks = max(d - 5, 0)  # the reference: depth - 5
        block = SkipBlock(w[d - 2], w[d - 1], innermost=True, norm=norm)
        for i in range(d - 2, 0, -1):  # middle levels, inside out
            block = SkipBlock(w[i - 1], w[i], child=block, norm=norm,
                              dropout=(d - 2 - i) < dropout_blocks)
        self.model = SkipBlock(out_channels, w[0], in_channels=in_channels, child=block,
                               outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=bias),
                       _norm(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Pix2PixTrainer:
    """The reference's training iteration (`optimize_parameters`) on a fixed batch."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, ngf: int, ndf: int,
                 n_layers: int, norm: str = "batch", dropout_blocks: int | None = None,
                 widths: list[int] | None = None, l1_weight: float = 100.0,
                 lr: float = 2e-4, device: str = "cpu", seed: int = 0):
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.G = UnetGenerator(in_channels, out_channels, depth, ngf, norm, dropout_blocks,
                               widths).to(self.device)
        self.D = PatchDiscriminator(in_channels + out_channels, ndf, n_layers,
                                    norm).to(self.device)
        init_weights(self.G)
        init_weights(self.D)
        self.G.train()
        self.D.train()
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=lr, betas=(0.5, 0.999))
        self.l1_weight = l1_weight

    @staticmethod
    def _gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)

    def train_step(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fake = self.G(a)
        # D: fake pairs (G detached) vs real pairs, the loss halved.
        self.D.requires_grad_(True)
        self.opt_d.zero_grad()
        d_fake = self._gan_loss(self.D(torch.cat((a, fake.detach()), 1)), False)
        d_real = self._gan_loss(self.D(torch.cat((a, b), 1)), True)
        d_loss = (d_fake + d_real) * 0.5
        d_loss.backward()
        self.opt_d.step()
        # G: fool the updated D (its weights frozen) and stay near the target in L1.
        self.D.requires_grad_(False)
        self.opt_g.zero_grad()
        g_gan = self._gan_loss(self.D(torch.cat((a, fake), 1)), True)
        g_loss = g_gan + self.l1_weight * F.l1_loss(fake, b)
        g_loss.backward()
        self.opt_g.step()
        return d_loss.detach(), g_loss.detach()


def make_batch(batch: int, image_size: int, in_channels: int, out_channels: int,
               device: str = "cpu", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed synthetic (input, target) pair batch, uniform in [-1, 1], NCHW."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(batch, in_channels, image_size, image_size, generator=g) * 2 - 1
    b = torch.rand(batch, out_channels, image_size, image_size, generator=g) * 2 - 1
    return a.to(device), b.to(device)


def benchmark(image_size: int = 256, in_channels: int = 3, out_channels: int = 3,
              depth: int = 8, ngf: int = 64, ndf: int = 64, n_layers: int = 3, batch: int = 1,
              norm: str = "batch", dropout_blocks: int | None = None, steps: int = 20,
              warmup: int = 3, windows: int = 5, device: str = "cpu") -> dict:
    trainer = Pix2PixTrainer(in_channels, out_channels, depth, ngf, ndf, n_layers, norm,
                             dropout_blocks, device=device)
    a, b = make_batch(batch, image_size, in_channels, out_channels, device)
    r = time_trainer(trainer, a, b, steps, warmup, windows)
    return {**r, "g_params": count_params(trainer.G), "d_params": count_params(trainer.D)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image_size", type=int, default=256)
    p.add_argument("--in_channels", type=int, default=3)
    p.add_argument("--out_channels", type=int, default=3)
    p.add_argument("--depth", type=int, default=8, help="U-Net down-samplings (8: unet_256)")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--n_layers", type=int, default=3, help="PatchGAN layers (3: 70x70)")
    p.add_argument("--norm", default="batch", choices=("batch", "instance"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    r = benchmark(a.image_size, a.in_channels, a.out_channels, a.depth, a.ngf, a.ndf,
                  a.n_layers, a.batch, a.norm, steps=a.steps, warmup=a.warmup, device=a.device)
    print(report(r))


if __name__ == "__main__":
    main()
