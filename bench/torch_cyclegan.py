"""CycleGAN in PyTorch as the reference implementation writes it, as a speed reference for
`bench/cyclegan.py`: the ResNet generator and PatchGAN discriminator of
junyanz/pytorch-CycleGAN-and-pix2pix (`models/networks.py`: ResnetGenerator, ResnetBlock,
NLayerDiscriminator, GANLoss('lsgan')), its image history pool (`util/image_pool.py`) and
one iteration of its `CycleGANModel.optimize_parameters` (`models/cycle_gan_model.py`),
re-written here.

Generator (ResnetGenerator, `n_blocks` 9 = resnet_9blocks, 6 = resnet_6blocks), every
norm InstanceNorm2d(affine=False, track_running_stats=False), as `--norm instance`:

  ReflectionPad(3) -> Conv(in, ngf, 7) -> norm -> ReLU
  Conv(ngf, 2·ngf, 3, 2, 1) -> norm -> ReLU;  Conv(2·ngf, 4·ngf, 3, 2, 1) -> norm -> ReLU
  n_blocks x  x + [ReflectionPad(1) -> Conv(4·ngf, 4·ngf, 3) -> norm -> ReLU
                   -> ReflectionPad(1) -> Conv(4·ngf, 4·ngf, 3) -> norm](x)
  ConvT(4·ngf, 2·ngf, 3, 2, 1, output_padding 1) -> norm -> ReLU
  ConvT(2·ngf, ngf, 3, 2, 1, output_padding 1) -> norm -> ReLU
  ReflectionPad(3) -> Conv(ngf, out, 7, bias) -> tanh

Discriminator (NLayerDiscriminator, `n_layers` 3 = the 70x70 PatchGAN):
  Conv(in, ndf, 4, 2, 1, bias) -> LReLU(0.2)
  -> [Conv(ndf·m', ndf·m, 4, 2, 1) -> norm -> LReLU(0.2)] for m = min(2^n, 8), n = 1..n_layers-1
  -> Conv(., ndf·min(2^n_layers, 8), 4, 1, 1) -> norm -> LReLU(0.2)
  -> Conv(., 1, 4, 1, 1, bias)          (30x30 scores for 256x256)

Biases: with instance norm the reference gives every convolution one
(`use_bias = norm_layer == nn.InstanceNorm2d`). genjax leaves them off the convolutions a
norm follows (the norm subtracts each channel's mean, so they change no output), and so does
this port by default, so that both sides of the bench build the same networks, parameter for
parameter; `reference_bias=True` builds the reference's exactly (G 11,378,179 and D
2,764,737 parameters for resnet_9blocks and the 70x70 PatchGAN on RGB; genjax's are 5,248
and 896 fewer, the biases it leaves off). The bias-free networks compute the same functions.

Weights N(0, 0.02), biases 0 (`init_weights`, init_type 'normal'). No dropout.

One iteration (`optimize_parameters`, gan_mode 'lsgan', lambda_A = lambda_B = 10,
lambda_identity 0.5, pools of 50):
  fake_B = G_A(A), rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A)
  generators (D_A, D_B frozen): idt_A = G_A(B), idt_B = G_B(A);
      L_G = MSE(D_A(fake_B), 1) + MSE(D_B(fake_A), 1) + 10·|rec_A - A| + 10·|rec_B - B|
            + 10·0.5·(|idt_A - B| + |idt_B - A|), backward, Adam step of G_A and G_B together
  discriminators: each on (MSE(D(real), 1) + MSE(D(pool.query(fake).detach()), 0)) · 0.5,
      D_A on real B and pooled fake_B, D_B on real A and pooled fake_A; Adam step of both
Adam(2e-4, betas=(0.5, 0.999)), one optimiser per pair, as the reference.

    python bench/torch_cyclegan.py                       # resnet_9blocks + 70x70, 256x256, batch 1
    python bench/torch_cyclegan.py --image_size=16 --channels=1 --ngf=16 --ndf=16 \
        --n_blocks=6 --n_layers=2 --batch=16              # configs/cyclegan.py's shape
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys

import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_common import count_params, init_weights, report, time_trainer  # noqa: E402,F401


def _norm(features: int) -> nn.Module:
    return nn.InstanceNorm2d(features, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, bias: bool):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, ngf: int = 64, n_blocks: int = 9,
                 reference_bias: bool = False):
        super().__init__()
        b = reference_bias
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=b), _norm(ngf),
                  nn.ReLU(True)]
        for i in range(2):
            m = 2 ** i
            layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1, bias=b), _norm(ngf * m * 2),
                       nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, b) for _ in range(n_blocks)]
        for i in range(2):
            m = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1,
                                          bias=b), _norm(ngf * m // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3,
                 reference_bias: bool = False):
        super().__init__()
        b = reference_bias
        layers = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=b),
                       _norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ImagePool:
    """The reference's util/image_pool.py: a history of `pool_size` generated images."""

    def __init__(self, pool_size: int):
        self.pool_size = pool_size
        self.num_imgs = 0
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return images
        out = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if self.num_imgs < self.pool_size:
                self.num_imgs += 1
                self.images.append(image)
                out.append(image)
            elif random.uniform(0, 1) > 0.5:
                i = random.randint(0, self.pool_size - 1)
                stored = self.images[i].clone()
                self.images[i] = image
                out.append(stored)
            else:
                out.append(image)
        return torch.cat(out, 0)


def _lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """GANLoss('lsgan'): MSE against a map of 1.0 (real) or 0.0 (fake)."""
    return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))


class CycleGANTrainer:
    """The reference's training iteration (`optimize_parameters`) on a fixed batch."""

    def __init__(self, channels: int, ngf: int, n_blocks: int, ndf: int, n_layers: int,
                 cycle_weight: float = 10.0, identity_weight: float = 0.5,
                 pool_size: int = 50, lr: float = 2e-4, reference_bias: bool = False,
                 device: str = "cpu", seed: int = 0):
        torch.manual_seed(seed)
        random.seed(seed)
        self.device = torch.device(device)

        def g():
            return ResnetGenerator(channels, channels, ngf, n_blocks,
                                   reference_bias).to(self.device)

        def d():
            return NLayerDiscriminator(channels, ndf, n_layers, reference_bias).to(self.device)

        self.G_A, self.G_B, self.D_A, self.D_B = g(), g(), d(), d()
        for net in (self.G_A, self.G_B, self.D_A, self.D_B):
            init_weights(net)
            net.train()
        self.opt_g = torch.optim.Adam(itertools.chain(self.G_A.parameters(),
                                                      self.G_B.parameters()),
                                      lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(itertools.chain(self.D_A.parameters(),
                                                      self.D_B.parameters()),
                                      lr=lr, betas=(0.5, 0.999))
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)
        self.cycle_weight, self.identity_weight = cycle_weight, identity_weight

    def _set_d_grad(self, on: bool) -> None:
        self.D_A.requires_grad_(on)
        self.D_B.requires_grad_(on)

    def train_step(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam, idt = self.cycle_weight, self.identity_weight
        fake_b = self.G_A(a)
        rec_a = self.G_B(fake_b)
        fake_a = self.G_B(b)
        rec_b = self.G_A(fake_a)
        # Generators, the discriminators frozen.
        self._set_d_grad(False)
        self.opt_g.zero_grad()
        g_loss = (_lsgan(self.D_A(fake_b), True) + _lsgan(self.D_B(fake_a), True)
                  + lam * F.l1_loss(rec_a, a) + lam * F.l1_loss(rec_b, b))
        if idt > 0:
            g_loss = g_loss + lam * idt * (F.l1_loss(self.G_A(b), b) + F.l1_loss(self.G_B(a), a))
        g_loss.backward()
        self.opt_g.step()
        # Discriminators on real images and pooled fakes.
        self._set_d_grad(True)
        self.opt_d.zero_grad()
        d_loss = 0.0
        for net, real, fake, pool in ((self.D_A, b, fake_b, self.pool_b),
                                      (self.D_B, a, fake_a, self.pool_a)):
            seen = pool.query(fake)
            loss = (_lsgan(net(real), True) + _lsgan(net(seen.detach()), False)) * 0.5
            loss.backward()
            d_loss = d_loss + loss.detach()
        self.opt_d.step()
        return d_loss, g_loss.detach()


def make_batch(batch: int, image_size: int, channels: int, device: str = "cpu",
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed synthetic unpaired batch (a, b), uniform in [-1, 1], NCHW."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(batch, channels, image_size, image_size, generator=g) * 2 - 1
    b = torch.rand(batch, channels, image_size, image_size, generator=g) * 2 - 1
    return a.to(device), b.to(device)


def benchmark(image_size: int = 256, channels: int = 3, ngf: int = 64, n_blocks: int = 9,
              ndf: int = 64, n_layers: int = 3, batch: int = 1, steps: int = 5,
              warmup: int = 1, windows: int = 5, device: str = "cpu") -> dict:
    trainer = CycleGANTrainer(channels, ngf, n_blocks, ndf, n_layers, device=device)
    a, b = make_batch(batch, image_size, channels, device)
    r = time_trainer(trainer, a, b, steps, warmup, windows)
    return {**r, "g_params": count_params(trainer.G_A), "d_params": count_params(trainer.D_A)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image_size", type=int, default=256)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--n_blocks", type=int, default=9, help="residual blocks (9: resnet_9blocks)")
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--n_layers", type=int, default=3, help="PatchGAN layers (3: 70x70)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    r = benchmark(a.image_size, a.channels, a.ngf, a.n_blocks, a.ndf, a.n_layers, a.batch,
                  steps=a.steps, warmup=a.warmup, device=a.device)
    print(report(r, " (each of two)"))


if __name__ == "__main__":
    main()
