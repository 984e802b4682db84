"""The variational autoencoder task: the autoencoder's model with a Gaussian posterior,
trained on the ELBO (see `genjax.tasks.autoencoder`, whose code it shares).

This module holds the VAE's config schema: the autoencoder's fields without the
denoising ones, plus the ELBO's (β, KL warm-up, the Gaussian decoder's std) and the
likelihood estimate's (`eval.iw_samples`).
"""

from __future__ import annotations

import ml_collections

from genjax import config as config_lib
from genjax.tasks import Task
from genjax.tasks import autoencoder

SHAPE_FIELDS = autoencoder.SHAPE_FIELDS


def defaults() -> ml_collections.ConfigDict:
    """Defaults of the variational autoencoder task: the autoencoder's fields plus the
    ELBO's (β, KL warm-up, Gaussian decoder std) and the likelihood estimate's."""
    c = autoencoder.defaults()
    c.task = "vae"  # Which module in genjax.tasks trains this config (genjax/tasks/<task>.py).
    c.seed = 0  # Seeds parameters, dropout, the latent samples and the data order.
    c.loss = "bernoulli"  # Decoder likelihood: 'bernoulli' or 'mse' (Gaussian, std decoder_std).
    c.decoder_std = 0.1  # Std of the Gaussian decoder ('mse'), in [-1, 1] pixel units.
    c.beta = 1.0  # Weight of the KL term (beta-VAE); the ELBO reported always uses 1.
    c.kl_warmup_steps = 0  # The KL weight rises linearly from 0 to beta over these steps.
    c.eval.iw_samples = 100  # k of the importance-weighted log-likelihood bound (IWAE).
    del c["corruption"]
    return c


def validate(c: ml_collections.ConfigDict) -> None:
    """The VAE's own checks (after the generic ones)."""
    autoencoder.validate_shared(c)
    config_lib.require(c.beta >= 0, f"Config field 'beta' must be 0 or positive, got {c.beta}.")
    config_lib.require(c.kl_warmup_steps >= 0, "Config field 'kl_warmup_steps' must be 0 or "
                       f"positive, got {c.kl_warmup_steps}.")
    config_lib.require(c.decoder_std > 0,
                       f"Config field 'decoder_std' must be positive, got {c.decoder_std}.")
    config_lib.require(c.eval.iw_samples >= 1, "Config field 'eval.iw_samples' must be at "
                       f"least 1, got {c.eval.iw_samples}.")


data_spec = autoencoder.data_spec


def make(config: ml_collections.ConfigDict, meta, *, load_run=None) -> Task:
    return autoencoder.build(config, meta, variational=True, load_run=load_run)
