"""Tasks: the pure functions that train one model family.

A task is `Task(init, train_step, sample, generate, latent_dim)`:
  init(seed) -> state                      host pytree of arrays
  train_step(state, batch) -> (state, metrics)   runs under `parallel.pmap`
  sample(state, key, num) -> images        float32 NHWC in [-1, 1], one device
  generate(state, z) -> images             the images of given latent codes z [N, latent_dim]
`make(config, meta)` builds the task that `config.task` names.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple


class Task(NamedTuple):
    init: Callable[[int], Any]
    train_step: Callable[[Any, dict], tuple[Any, dict]]
    sample: Callable[[Any, Any, int], Any]
    generate: Callable[[Any, Any], Any]
    latent_dim: int


def make(config, meta) -> Task:
    from genjax.tasks import gan

    makers = {"gan": gan.make}
    return makers[config.task](config, meta)
