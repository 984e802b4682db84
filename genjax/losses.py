"""Losses as pure functions of model outputs: the GAN losses of discriminator logits, and
the autoencoders' reconstruction likelihoods and KL divergences (at the end).

GAN losses. Conventions: real = 1, fake = 0 (the seed notes use both labellings; genjax uses
the standard one). `real` and `fake` are the discriminator's raw outputs (logits,
D(x) = sigmoid(logit) for the probabilistic losses). Every loss is written with
`softplus` so that it stays finite for logits of any size:

    -log sigmoid(t)     = softplus(-t)
    -log(1 - sigmoid(t)) = softplus(t)

Each discriminator loss returns `(loss, loss_on_real, loss_on_fake)`, each a batch
mean; each generator loss returns a scalar. `get(name)` picks a pair by name.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
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


def matching_aware_discriminator(loss: GANLoss, real, wrong, fake, weight: float):
    """The matching-aware discriminator loss of GAN-CLS (Reed et al. 2016, with class
    labels or captions as the condition y): D must call real only a genuine image with
    its own condition, and fake both a genuine image with a wrong condition and a
    generated image with its condition:

        L_D = L_real(D(x, y)) + w·L_fake(D(x, y')) + (1 - w)·L_fake(D(G(z, y), y))

    with L_real / L_fake the chosen loss's terms for the 'real' and 'fake' targets
    (`loss.discriminator`). w = 0 is the plain conditional GAN; w = ½ is Reed et al.'s
    `cls_weight`. Returns `(loss, on_real, on_wrong, on_fake)`, each a batch mean."""
    _, on_real, on_fake = loss.discriminator(real, fake)
    _, _, on_wrong = loss.discriminator(real, wrong)
    return on_real + weight * on_wrong + (1.0 - weight) * on_fake, on_real, on_wrong, on_fake


def mismatched_labels(key, labels, num_classes: int, randint=jax.random.randint):
    """For each label y, a label drawn uniformly from the other num_classes - 1 classes
    (never y itself): y' = (y + u) mod K with u uniform on 1..K-1. `randint` draws u
    (`parallel.global_randint` inside a pmapped step, so draws do not depend on the
    device count)."""
    if num_classes < 2:
        raise ValueError(f"Mismatched labels need at least 2 classes, got {num_classes}.")
    shift = randint(key, labels.shape, 1, num_classes, dtype=labels.dtype)
    return (labels + shift) % num_classes


# ----------------------------------------------------------------------- autoencoders
#
# Images are in [-1, 1]. A decoder outputs per-pixel logits; `decoded_image` maps them to
# an image for each reconstruction model. Log-likelihoods and KL divergences are summed
# over an example's pixels or latent dimensions (nats per example); losses are means.

RECONSTRUCTION_LOSSES = ("mse", "bernoulli")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _per_example_sum(x):
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


def decoded_image(logits, likelihood: str):
    """The image [-1, 1] a decoder's logits stand for: tanh for 'mse' (the Gaussian
    mean), 2·sigmoid - 1 for 'bernoulli' (the mean intensity)."""
    if likelihood == "mse":
        return jnp.tanh(logits)
    if likelihood == "bernoulli":
        return 2.0 * jax.nn.sigmoid(logits) - 1.0
    raise KeyError(f"Unknown reconstruction loss {likelihood!r}; valid: "
                   f"{', '.join(RECONSTRUCTION_LOSSES)}.")


def bernoulli_log_likelihood(logits, x):
    """log p(x | logits) per example with intensities t = (x + 1) / 2 in [0, 1] as
    Bernoulli targets (exact for binary images; the usual cross-entropy otherwise):
    sum t·log σ(l) + (1 - t)·log(1 - σ(l)) = sum t·l - softplus(l)."""
    t = (x + 1.0) / 2.0
    return _per_example_sum(t * logits - softplus(logits))


def gaussian_log_likelihood(mean, x, std: float):
    """log N(x; mean, std²·I) per example."""
    return _per_example_sum(-0.5 * jnp.square((x - mean) / std) - jnp.log(std) - _HALF_LOG_2PI)


def log_normal(z, mean, log_std):
    """log N(z; mean, diag(exp(log_std))²) per example; the standard normal for 0, 0."""
    return _per_example_sum(-0.5 * jnp.square((z - mean) * jnp.exp(-log_std)) - log_std
                            - _HALF_LOG_2PI)


def gaussian_kl(mean, log_std):
    """KL(N(mean, diag(exp(log_std))²) || N(0, I)) per example, in closed form:
    sum ½(mean² + std² - 1) - log std."""
    return _per_example_sum(0.5 * (jnp.square(mean) + jnp.exp(2.0 * log_std) - 1.0) - log_std)


def reconstruction_loss(logits, x, likelihood: str):
    """The autoencoder's loss, a batch mean per pixel: squared error of the tanh image
    ('mse') or the Bernoulli cross-entropy ('bernoulli')."""
    pixels = x[0].size
    if likelihood == "mse":
        return jnp.mean(jnp.square(jnp.tanh(logits) - x))
    if likelihood == "bernoulli":
        return -jnp.mean(bernoulli_log_likelihood(logits, x)) / pixels
    raise KeyError(f"Unknown reconstruction loss {likelihood!r}; valid: "
                   f"{', '.join(RECONSTRUCTION_LOSSES)}.")


# ------------------------------------------------------------ joint image-text embedding

def contrastive(image_embeddings, text_embeddings, scale):
    """The symmetric contrastive loss of a joint embedding (CLIP, Radford et al. 2021):
    with logits L = scale · F Φᵀ over a batch of N matching pairs (row i of F and of Φ
    describe the same example),

        loss = ½·[ mean_i -log softmax(L_i·)_i  +  mean_j -log softmax(L_·j)_j ],

    image -> text and text -> image cross-entropies with the true pair as the label.
    Returns `(loss, image_to_text_accuracy, text_to_image_accuracy)`, the accuracies the
    fraction of rows whose largest logit is the true pair."""
    logits = scale * jnp.matmul(image_embeddings.astype(jnp.float32),
                                text_embeddings.astype(jnp.float32).T)
    n = logits.shape[0]
    diagonal = jnp.diagonal(logits)
    image_to_text = jnp.mean(jax.nn.logsumexp(logits, axis=1) - diagonal)
    text_to_image = jnp.mean(jax.nn.logsumexp(logits, axis=0) - diagonal)
    index = jnp.arange(n)
    return (0.5 * (image_to_text + text_to_image),
            jnp.mean(jnp.argmax(logits, axis=1) == index),
            jnp.mean(jnp.argmax(logits, axis=0) == index))
