"""State pytrees and the one player update every task uses.

A state holds arrays only; models, optimisers and config are bound statically with
`functools.partial`. A player is what one optimiser trains: parameters, BatchNorm
statistics and the optimiser's state. Every task's state has `step`, `key` (key data;
per-step keys are `fold_in(key, step)`), `skipped` and `nonfinite_streak` (`finish_step`
keeps the last three); `ModelState` below fits any task with one player, a task with
more players defines its own (e.g. `genjax.tasks.gan.GANState`).

The state is the same on every device. The loop checkpoints one device's copy and the
evaluators read one device's copy, so a step must leave every device holding bitwise
the same state: gradients and losses are averaged over the device axis (`update_player`),
BatchNorm statistics are averaged by `axis_name`, and anything else that could differ
per device (per-device draws, an image history pool, per-device statistics) is made
global inside the step (gathered, or computed from global values) before it enters the
state. Per-device randomness (dropout masks, latent noise) folds in the device index
(`parallel.device_key`) and never enters the state. The 8-device task tests check the
rule (tests/tasks/taskutil.py: `assert_one_device_matches_eight`).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from genjax import parallel


@flax.struct.dataclass
class Player:
    params: Any
    batch_stats: Any
    opt_state: Any


@flax.struct.dataclass
class ModelState:
    """One model trained by one optimiser: a classifier, an autoencoder, a VAE."""

    step: jnp.ndarray  # int32: completed updates.
    key: jnp.ndarray  # uint32 key data; per-step keys are fold_in(key, step).
    model: Player
    skipped: jnp.ndarray  # int32: updates skipped because a loss or gradient was not finite.
    nonfinite_streak: jnp.ndarray  # int32: consecutive skipped updates.


def init_player(variables: dict, tx: optax.GradientTransformation) -> Player:
    params = variables["params"]
    return Player(params, variables.get("batch_stats", {}), tx.init(params))


def tree_all_finite(tree: Any) -> jnp.ndarray:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.array(True)


def update_player(
    player: Player,
    tx: optax.GradientTransformation,
    loss_fn: Callable[[Any], tuple[jnp.ndarray, tuple[Any, dict]]],
) -> tuple[Player, jnp.ndarray, dict, jnp.ndarray]:
    """One explicit optax transition of one player.

    `loss_fn(params) -> (loss, (new_batch_stats, aux_metrics))` is differentiated with
    respect to this player's parameters only. Gradients and the loss are averaged over
    the device axis, so every device applies the same update. If the loss or any
    gradient is not finite, the player is returned unchanged and `finite` is False.
    """
    (loss, (batch_stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(player.params)
    loss, grads = parallel.pmean((loss, grads))
    updates, opt_state = tx.update(grads, player.opt_state, player.params)
    params = optax.apply_updates(player.params, updates)
    finite = jnp.isfinite(loss) & tree_all_finite(grads)
    updated = Player(params, batch_stats, opt_state)
    player = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, player)
    return player, loss, aux, finite


def finish_step(state, finite: jnp.ndarray, metrics: dict) -> tuple[Any, dict]:
    """The end of every task's step: count the iteration, and a skipped update (`finite`
    False) in `skipped` and the running `nonfinite_streak`; average the metrics over the
    device axis and add the two counters as `train/skipped_updates` and
    `train/nonfinite_streak`."""
    skipped = (~finite).astype(jnp.int32)
    state = state.replace(step=state.step + 1, skipped=state.skipped + skipped,
                          nonfinite_streak=(state.nonfinite_streak + 1) * skipped)
    metrics = parallel.pmean(metrics)
    metrics["train/skipped_updates"] = state.skipped
    metrics["train/nonfinite_streak"] = state.nonfinite_streak
    return state, metrics
