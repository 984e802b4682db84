"""Checkpoints: the train state, the input pipeline's position and run metadata, saved
together by orbax (atomically: a step folder exists only once its save committed).

State is saved as a plain nested dict of arrays (`flax.serialization.to_state_dict`)
and restored only into an explicit target built from the current config, with every
leaf's shape and dtype checked, so a checkpoint can never silently change a model.
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from genjax.errors import CheckpointError

_VERSIONED = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain",
              "tensorflow-datasets", "numpy")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        versions["genjax"] = importlib.metadata.version("genjax-images")
    except importlib.metadata.PackageNotFoundError:
        pass
    return versions


def _state_tree(state: Any) -> dict:
    return flax.serialization.to_state_dict(state)


class Checkpoints:
    """Orbax CheckpointManager over `<workdir>/checkpoints` with items state/data/meta."""

    def __init__(self, directory, max_to_keep: int = 3, read_only: bool = False):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
            cleanup_tmp_directories=not read_only, enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict, meta: dict) -> None:
        """Starts an asynchronous save of host (numpy) arrays; `wait` blocks on it."""
        tree = _state_tree(jax.device_get(state))
        meta = {**meta, "step": int(step), "versions": library_versions()}
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(tree),
            data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, step: int, target: Any) -> tuple[Any, dict, dict]:
        """Restores `step` into the structure of `target` (arrays or ShapeDtypeStructs)."""
        target_tree = _state_tree(target)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), target_tree)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types; all mean "this step is unusable".
            raise CheckpointError(
                f"Could not restore checkpoint step {step} in {self.directory}: "
                f"{type(e).__name__}: {e}") from e
        _check_shapes(abstract, restored.state, step)
        state = flax.serialization.from_state_dict(target, jax.device_get(restored.state))
        return state, restored.data, restored.meta

    def metadata(self, step: int) -> dict:
        """The run metadata saved with `step` (task, dataset, library versions)."""
        return self.manager.restore(
            step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _check_shapes(expected: dict, got: dict, step: int) -> None:
    exp = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(expected)}
    act = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(got)}
    problems = [f"{k}: missing" for k in exp if k not in act]
    problems += [f"{k}: checkpoint {np.shape(act[k])} {act[k].dtype} vs model {v.shape} {v.dtype}"
                 for k, v in exp.items()
                 if k in act and (np.shape(act[k]) != v.shape or act[k].dtype != v.dtype)]
    if problems:
        raise CheckpointError(
            f"Checkpoint step {step} does not fit the model built from this config: "
            + "; ".join(problems[:10])
            + ". Use the config the run was started with, or a new --workdir.")
