"""Checkpoints: the train state, the input pipeline's position and run metadata, saved
together by orbax (atomically: a step folder exists only once its save committed;
an unfinished save stays a `<step>.orbax-checkpoint-tmp*` folder, which the next
writable `Checkpoints` removes).

State is saved as a plain nested dict of arrays (`flax.serialization.to_state_dict`)
and restored only into an explicit target built from the current config. The saved
shapes and dtypes are compared with the target's before any array is read, so a
checkpoint can never silently change a model. Two kinds of failure are kept apart:
`CheckpointError` (this checkpoint does not fit this config: nothing is wrong with it)
and `CorruptCheckpointError` (this step cannot be read back: the loop may move it aside
and fall back to an older one). Non-finite values are never written.

Keeping the best: a step saved right after an evaluation carries its quality figure
(`Quality.record`: the metric, its value, and which way is better) as orbax's own
per-step metrics. Orbax's preservation policy keeps the newest `max_to_keep` steps and,
besides them, the one step with the best figure (`LatestN` or `BestN(n=1)`), so rotation
never deletes the best; `best()` reads it back, also in a later process, from the steps
on disk.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from genjax.errors import (CheckpointError, CheckpointSaveError, CorruptCheckpointError,
                           NonFiniteError)

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


class Quality(NamedTuple):
    """The figure by which a run's best checkpoint is chosen: the name of an evaluation
    scalar (e.g. 'eval/fd') and which way is better, 'min' (lower) or 'max' (higher).
    Each measurement of genjax.evaluate declares its own."""
    metric: str
    mode: str

    def record(self, scalars: dict) -> dict | None:
        """What a step saved after this evaluation carries: {metric, value, mode}; None
        when the scalars lack the figure or it is not finite (such a step is never best)."""
        value = scalars.get(self.metric)
        if value is None or not np.isfinite(value):
            return None
        return {"metric": self.metric, "value": float(value), "mode": self.mode}


QUALITY_MODES = ("min", "max")


def _score(record: dict | None) -> float:
    """A step's rank, higher is better: its figure's value, negated where lower is
    better; -inf for a step that carries none. (Orbax's own key for the best step.)"""
    if not isinstance(record, dict) or record.get("mode") not in QUALITY_MODES:
        return -np.inf
    value = record.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return -np.inf
    return -float(value) if record["mode"] == "min" else float(value)


class _Manager(ocp.CheckpointManager):
    """Orbax's manager, except that a step whose metrics file is damaged counts as a
    step without a figure (with a warning) instead of stopping every reader of the
    workdir; its state is read, or found unreadable, as any other step's."""

    def _get_metrics(self, step: int):  # what orbax reads a step's metrics with
        try:
            return super()._get_metrics(step)
        except Exception as e:  # orbax reads it as JSON: ValueError, OSError, ...
            logging.getLogger(__name__).warning(
                "Checkpoint step %d: its metrics file (the evaluation figure) cannot be "
                "read (%s: %s); the step counts as not evaluated.", step, type(e).__name__, e)
            return None


class _FailedReadNoise(logging.Filter):
    """Drops asyncio's 'Task exception was never retrieved' for tensorstore read errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (str(record.msg).startswith("Task exception was never retrieved")
                    and isinstance(error, ValueError) and "OCDBT" in str(error))


class _UnrankedSaveNoise(logging.Filter):
    """Drops orbax's warning, at every save without metrics, that a manager which ranks
    steps was given none: only the steps saved after an evaluation carry a figure."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "did not provide metrics" not in str(record.msg)


def _silence_unranked_save_noise() -> None:
    logger = logging.getLogger("absl")
    if not any(isinstance(f, _UnrankedSaveNoise) for f in logger.filters):
        logger.addFilter(_UnrankedSaveNoise())


def _silence_failed_read_noise() -> None:
    """When one array of a step fails to read, orbax abandons its event loop while
    tensorstore still completes the step's other reads. Their callbacks then print
    RuntimeError('Event loop is closed') tracebacks (as unraisable exceptions), and the
    abandoned reads' own errors may be logged as 'Task exception was never retrieved'.
    The failure itself is raised and reported, so these tracebacks are only noise: this
    drops exactly them (process-wide, once) and passes everything else on."""
    previous = sys.unraisablehook
    if getattr(previous, "_genjax_filter", False):
        return

    def hook(unraisable):
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            previous(unraisable)

    hook._genjax_filter = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_FailedReadNoise())


# Fault injection for the reliability tests, unset in normal use: when this environment
# variable names a step, the process kills itself (SIGKILL) in the middle of saving that
# step, at a fixed point: orbax has created the unfinished `<step>.orbax-checkpoint-tmp*`
# folder and started writing into it, and the save cannot commit, since the commit waits
# for this handler. So `kill -9 during a save` is tested by construction, not by chance.
KILL_DURING_SAVE_ENV = "GENJAX_KILL_DURING_SAVE"


def _meta_handler() -> ocp.JsonCheckpointHandler:
    """orbax's JSON handler for the run metadata; with `KILL_DURING_SAVE_ENV` set, it
    kills the process once it has started writing the metadata of that step."""
    handler = ocp.JsonCheckpointHandler()
    armed = os.environ.get(KILL_DURING_SAVE_ENV)
    if not armed:
        return handler
    save = handler.async_save

    async def async_save(directory, item=None, args=None):
        futures = await save(directory, item, args)
        if args is not None and str(args.item.get("step")) == armed:
            unfinished = Path(directory).parent
            for _ in range(1000):  # orbax may create the folders asynchronously
                if unfinished.is_dir():
                    break
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
        return futures

    handler.async_save = async_save
    return handler


def _state_tree(state: Any) -> dict:
    return flax.serialization.to_state_dict(state)


class Checkpoints:
    """Orbax CheckpointManager over `<workdir>/checkpoints` with items state/data/meta,
    keeping the newest `max_to_keep` steps and the best evaluated one (module docstring)."""

    def __init__(self, directory, max_to_keep: int = 3, read_only: bool = False):
        self.directory = Path(directory).absolute()
        # A read-only manager deletes nothing, so it gets no preservation policy.
        policies = ocp.checkpoint_managers
        keep = None if read_only else policies.AnyPreservationPolicy([
            policies.LatestN(n=max_to_keep),
            policies.BestN(get_metric_fn=_score, reverse=False, n=1,
                           keep_checkpoints_without_metrics=False)])
        # best_fn makes orbax write a step's metrics and rank steps by them (best_step).
        options = ocp.CheckpointManagerOptions(
            preservation_policy=keep, best_fn=_score, best_mode="max", create=not read_only,
            read_only=read_only, cleanup_tmp_directories=not read_only,
            enable_async_checkpointing=True)
        _silence_unranked_save_noise()
        # Handlers registered up front, so that a step's metadata (saved shapes) can be
        # read before, and without, restoring its arrays.
        registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
        for item, handler, save, restore in [
                ("state", ocp.StandardCheckpointHandler(), ocp.args.StandardSave,
                 ocp.args.StandardRestore),
                ("data", ocp.JsonCheckpointHandler(), ocp.args.JsonSave, ocp.args.JsonRestore),
                ("meta", _meta_handler(), ocp.args.JsonSave, ocp.args.JsonRestore)]:
            registry.add(item, save, handler)
            registry.add(item, restore, handler)
        self.manager = _Manager(self.directory, options=options, handler_registry=registry)
        self._in_flight: int | None = None  # step of the asynchronous save not yet waited on
        self._records: dict[int, dict] = {}  # quality records of the steps saved here
        self._failed = False

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def committed_steps(self) -> list[int]:
        """The finished step folders on disk (read afresh, not from orbax's cache)."""
        if not self.directory.is_dir():
            return []
        return sorted(int(p.name) for p in self.directory.iterdir()
                      if p.name.isdigit() and p.is_dir())

    def save(self, step: int, state: Any, data_state: dict, meta: dict,
             quality: dict | None = None) -> None:
        """Starts an asynchronous save of host (numpy) arrays; `wait` blocks on it.
        `quality` is the `Quality.record` of an evaluation of this very state, if any.

        Raises NonFiniteError (and writes nothing) if any value is NaN or infinite, and
        CheckpointSaveError if this save, or the previous one still in flight, fails.
        """
        tree = _state_tree(jax.device_get(state))
        bad = _nonfinite_leaves(tree)
        if bad:
            raise NonFiniteError(
                f"Refusing to write checkpoint step {step}: the state holds non-finite values "
                f"in {', '.join(bad[:5])}. The checkpoints already in {self.directory} are "
                "untouched; lower the learning rates or check the input data, then resume.")
        self.wait()  # a failure of the previous save is reported under its own step
        meta = {**meta, "step": int(step), "versions": library_versions()}
        try:
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree),
                data=ocp.args.JsonSave(data_state),
                meta=ocp.args.JsonSave(meta)), metrics=quality, force=True)
        except Exception as e:  # OSError, or tensorstore's ValueError wrapping one
            raise self._save_error(step, e) from e
        self._in_flight = step
        if quality is not None:
            self._records[step] = quality

    def best(self) -> dict | None:
        """{step, metric, value, mode} of the step with the best figure among those on
        disk and in flight (orbax's choice), or None if no step carries one."""
        step = self.manager.best_step()
        if step is None:
            return None
        # A save still in flight has no metrics file yet: this process remembers its own.
        record = self._records.get(step) or self.manager.metrics(step)
        return {"step": int(step), **record} if _score(record) > -np.inf else None

    def improves(self, record: dict | None) -> bool:
        """Whether a step carrying `record` would be strictly better than the best so far."""
        return _score(record) > _score(self.best())

    def wait(self) -> None:
        """Blocks until the save in flight is committed; raises CheckpointSaveError if not."""
        step, self._in_flight = self._in_flight, None
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise self._save_error(step, e) from e

    def _save_error(self, step: int | None, error: Exception) -> CheckpointSaveError:
        self._failed = True
        intact = self.committed_steps()
        resume = (f"run the same command again to resume from step {intact[-1]}" if intact
                  else "run the same command again to start afresh")
        return CheckpointSaveError(
            f"Saving checkpoint step {step} in {self.directory} failed: "
            f"{type(error).__name__}: {error}. Training stopped. The earlier checkpoints "
            f"(steps {intact or 'none'}) are intact; the unfinished save is removed on the "
            f"next start. Free disk space or make the directory writable, then {resume}.")

    def restore(self, step: int, target: Any) -> tuple[Any, dict, dict]:
        """Restores `step` into the structure of `target` (arrays or ShapeDtypeStructs).

        Raises CheckpointError if the saved shapes differ from the target's (the fields
        are named), CorruptCheckpointError if the step cannot be read back.
        """
        target_tree = _state_tree(target)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), target_tree)
        _check_shapes(abstract, self._saved_shapes(step), step)
        _silence_failed_read_noise()
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types; all mean "this step is unusable".
            raise self._corrupt(step, f"{type(e).__name__}: {e}") from e
        _check_shapes(abstract, restored.state, step)
        values = jax.device_get(restored.state)
        bad = _nonfinite_leaves(values)
        if bad:  # genjax never writes these, so the files were damaged afterwards
            raise self._corrupt(step, f"non-finite values in {', '.join(bad[:5])}")
        state = flax.serialization.from_state_dict(target, values)
        return state, restored.data, restored.meta

    def _saved_shapes(self, step: int) -> dict:
        """Shapes and dtypes of the saved state, read from the step's metadata only."""
        try:
            metadata = self.manager.item_metadata(step).state
        except Exception as e:
            raise self._corrupt(step, f"{type(e).__name__}: {e}") from e
        if metadata is None:  # orbax warns and returns None when state/_METADATA is gone
            raise self._corrupt(step, "the state's metadata file (state/_METADATA) is "
                                "missing or unreadable")
        tree = getattr(metadata, "tree", metadata)
        return jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), np.dtype(m.dtype)),
                            tree, is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))

    def _corrupt(self, step: int, reason: str) -> CorruptCheckpointError:
        error = CorruptCheckpointError(
            f"Checkpoint step {step} in {self.directory} cannot be read back: {reason}")
        error.reason = reason
        return error

    def move_aside(self, step: int, destination) -> Path:
        """Moves step `step` to `destination/<step>-<timestamp>` (never deletes it)."""
        destination = Path(destination)
        destination.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target, n = destination / f"{step}-{stamp}", 1
        while target.exists():
            target, n = destination / f"{step}-{stamp}-{n}", n + 1
        shutil.move(str(self.directory / str(step)), str(target))
        # Orbax caches the step list; without a reload it would count the moved step
        # towards max_to_keep and could delete a good one to make room.
        self.manager.reload()
        return target

    def metadata(self, step: int) -> dict:
        """The run metadata saved with `step` (task, dataset, library versions)."""
        return self.manager.restore(
            step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def close(self) -> None:
        """Waits for the save in flight, then releases orbax's threads."""
        try:
            if not self._failed:
                self.wait()
        finally:
            try:
                self.manager.close()
            except Exception:
                if not self._failed:  # else the failure was reported already
                    raise


def _nonfinite_leaves(tree: Any) -> list[str]:
    """Names of the floating-point leaves that hold a NaN or an infinity."""
    return [jax.tree_util.keystr(path) for path, x in jax.tree_util.tree_leaves_with_path(tree)
            if np.issubdtype(np.asarray(x).dtype, np.inexact) and not np.all(np.isfinite(x))]


def _check_shapes(expected: dict, got: dict, step: int) -> None:
    exp = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(expected)}
    act = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(got)}
    problems = [f"{k}: missing from the checkpoint" for k in exp if k not in act]
    problems += [f"{k}: in the checkpoint but not in the model" for k in act if k not in exp]
    problems += [f"{k}: checkpoint {np.shape(act[k])} {np.dtype(act[k].dtype)} vs model "
                 f"{v.shape} {np.dtype(v.dtype)}"
                 for k, v in exp.items()
                 if k in act and (np.shape(act[k]) != v.shape or act[k].dtype != v.dtype)]
    if problems:
        raise CheckpointError(
            f"Checkpoint step {step} does not fit the model built from this config "
            f"({len(problems)} field(s) differ): " + "; ".join(problems[:10])
            + ". Use the config the run was started with, or a new --workdir; the "
            "checkpoint was left untouched.")
