"""Tasks: the pure functions that train one model family.

A task is `Task(init, train_step, sample, generate, latent_dim, classify)`:
  init(seed) -> state                      host pytree of arrays
  train_step(state, batch) -> (state, metrics)   runs under `parallel.pmap`
  sample(state, key, num) -> images        float32 NHWC in [-1, 1], one device
  generate(state, z) -> images             the images of given latent codes z [N, latent_dim]
  classify(state, images) -> (logits, features)  a classifier's outputs, one device
  encode(state, images) -> codes           an autoencoder's codes z (a VAE's posterior means)
  decode(state, z) -> images               the images of codes (autoencoders)
  reconstruct(state, images) -> images     decode(encode(images))
  interpolate(state, a, b, num) -> images  decodings along the line between two codes
  pictures(state, images, key, partner) -> {name: (images, columns)}  grids the loop
                                           draws from fixed held-out images (autoencoders)
  log_likelihood(state, images, key, k) -> {'elbo', 'iwae', ...}  per-image bounds (VAE)
Only `init` and `train_step` are required: a task that does not generate images has no
`sample` (the loop then draws no sample grids), one that does not classify no `classify`.
The functions after `train_step` run on one device, in evaluation mode.
`make(config, meta)` builds the task that `config.task` names.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple


class Task(NamedTuple):
    init: Callable[[int], Any]
    train_step: Callable[[Any, dict], tuple[Any, dict]]
    sample: Callable[[Any, Any, int], Any] | None = None
    generate: Callable[[Any, Any], Any] | None = None
    latent_dim: int = 0
    classify: Callable[[Any, Any], tuple[Any, Any]] | None = None
    encode: Callable[[Any, Any], Any] | None = None
    decode: Callable[[Any, Any], Any] | None = None
    reconstruct: Callable[[Any, Any], Any] | None = None
    interpolate: Callable[..., Any] | None = None
    pictures: Callable[..., dict] | None = None
    log_likelihood: Callable[..., dict] | None = None


def make(config, meta) -> Task:
    from genjax.tasks import autoencoder, classifier, gan

    makers = {"gan": gan.make, "classifier": classifier.make, "autoencoder": autoencoder.make,
              "vae": autoencoder.make}
    return makers[config.task](config, meta)
