"""GAN losses as pure functions of discriminator logits.

Conventions: real = 1, fake = 0 (the seed notes use both labellings; genjax uses
the standard one). `real` and `fake` are the discriminator's raw outputs (logits,
D(x) = sigmoid(logit) for the probabilistic losses). Every loss is written with
`softplus` so that it stays finite for logits of any size:

    -log sigmoid(t)     = softplus(-t)
    -log(1 - sigmoid(t)) = softplus(t)

Each discriminator loss returns `(loss, loss_on_real, loss_on_fake)`, each a batch
mean; each generator loss returns a scalar. `get(name)` picks a pair by name.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp
from jax.nn import relu, softplus


class GANLoss(NamedTuple):
    discriminator: Callable[[jnp.ndarray, jnp.ndarray], tuple[jnp.ndarray, ...]]
    generator: Callable[[jnp.ndarray], jnp.ndarray]


def _split(loss_real, loss_fake):
    real, fake = jnp.mean(loss_real), jnp.mean(loss_fake)
    return real + fake, real, fake


def bce_discriminator(real, fake):
    """max_D E[log D(x)] + E[log(1 - D(G(z)))], as a loss to minimise:
    softplus(-real) + softplus(fake). Shared by `minimax` and `non_saturating`."""
    return _split(softplus(-real), softplus(fake))


def minimax_generator(fake):
    """The original (saturating) min-max game: min_G E[log(1 - D(G(z)))] = -softplus(fake).
    Its gradient vanishes when D confidently rejects the fakes, early in training."""
    return jnp.mean(-softplus(fake))


def non_saturating_generator(fake):
    """Goodfellow et al. 2014's practical variant: min_G -E[log D(G(z))] = softplus(-fake)."""
    return jnp.mean(softplus(-fake))


def hinge_discriminator(real, fake):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): relu(1 - real) + relu(1 + fake)."""
    return _split(relu(1.0 - real), relu(1.0 + fake))


def hinge_generator(fake):
    """-E[D(G(z))] on the raw discriminator output."""
    return -jnp.mean(fake)


def least_squares_discriminator(real, fake):
    """LSGAN (Mao et al. 2017), targets 1 for real and 0 for fake: ½(real-1)² + ½fake²."""
    return _split(0.5 * jnp.square(real - 1.0), 0.5 * jnp.square(fake))


def least_squares_generator(fake):
    """½(fake - 1)²: the generator pulls its outputs to the 'real' target."""
    return jnp.mean(0.5 * jnp.square(fake - 1.0))


GAN_LOSSES = {
    "non_saturating": GANLoss(bce_discriminator, non_saturating_generator),
    "minimax": GANLoss(bce_discriminator, minimax_generator),
    "hinge": GANLoss(hinge_discriminator, hinge_generator),
    "least_squares": GANLoss(least_squares_discriminator, least_squares_generator),
}


def get(name: str) -> GANLoss:
    if name not in GAN_LOSSES:
        raise KeyError(f"Unknown GAN loss {name!r}; valid: {', '.join(GAN_LOSSES)}.")
    return GAN_LOSSES[name]
