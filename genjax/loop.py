"""The generic training loop: any task, any dataset, any number of local devices.

`train_and_evaluate(config, workdir)` finds the task module `config.task` names
(`genjax.tasks`), serves the batches its `data_spec` asks for, initialises or restores
the state, feeds batches to the `pmap`ped step, and every so often logs scalars, draws
the task's `visuals` from one fixed held-out batch (taken once, before training, and
never looked inside), runs the evaluators the task declares, and saves a checkpoint
(train state + the pipeline's position), so that running it again resumes exactly
where it stopped. It knows no family: what differs between families is in their task
modules.

The best checkpoint: with `eval_every_steps` on, each evaluation's quality figure (the
one its measurement declares: a GAN's FD, lower is better; a classifier's accuracy; ...)
is saved with the step. A step whose figure beats every earlier one is saved even off
the `checkpoint_every_steps` grid, and kept beside the newest `keep_checkpoints` until a
better one comes (`Checkpoints`); <workdir>/eval/best.json names it once it is committed,
and TensorBoard gets `eval/best_<figure>`. A resumed run knows the best so far from its
checkpoints, so a later, worse figure never replaces it.

Pictures: every `sample_every_steps` (and at the last step), each `(images, columns)`
the task's visuals return under a name goes to <workdir>/samples/<name>_step_<N>.png
and to TensorBoard; the one named 'samples' (a GAN's or VAE's sample grid) to
samples/step_<N>.png.

What it does when things go wrong (the tests in tests/test_reliability.py prove each):
- A bad config, an unknown or unprepared dataset, or a workdir whose checkpoints have
  other shapes fail before anything is written.
- With `eval_every_steps` on, a missing default evaluation classifier
  (runs/classifier_<dataset>) is trained first, as `python -m genjax.evaluate` does; a
  classifier the config names (eval.classifier_workdir) that is missing fails before
  anything is written.
- Restoring takes the newest checkpoint that reads back. Newer ones that do not are
  moved to `<workdir>/checkpoints_corrupt/<step>-<time>` with a warning, never deleted;
  if none reads back, it stops and changes nothing (it never silently starts afresh).
- Updates with a non-finite loss or gradient are skipped inside the step and counted.
  The pmapped step also carries the first step at which the streak of skipped updates
  reached `max_nonfinite_steps`, so no streak goes unseen between checks, yet the host
  reads it only where it synchronises anyway: at log steps and before each save. So a
  diverged run stops at most min(log_every_steps, checkpoint_every_steps) steps after
  the streak reached the limit, without a host round trip per step, and it never
  writes a checkpoint after that point (nor one holding a NaN: `Checkpoints.save`
  refuses those).
- One live run per workdir: `genjax.lock` holds `<workdir>/run.lock` from before the
  first write; a second run on the same workdir stops at once, naming the first.
- SIGTERM/SIGINT stop at the next step boundary after a committed checkpoint
  (`genjax.preemption`); a failed save stops training with the earlier checkpoints
  intact.

Several processes (`genjax.parallel.initialize`, e.g. a TPU pod slice): every process runs
this same loop on its own devices and feeds its own rows of each global batch; the
step's collectives span all devices. Process 0 alone holds the workdir lock and writes
config.json, the logs, pictures, evaluations and eval/best.json; every process takes
part in each checkpoint save and restore (orbax coordinates them). Decisions that must
agree are made together: a stop signal received by any process stops all of them at the
same step, found at the next step that is a multiple of `log_every_steps` or
`checkpoint_every_steps` (the non-finite streak is in the replicated state, so it agrees
by itself); an evaluation's figure, which decides a best-step save, is process 0's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from tensorboardX import SummaryWriter

from genjax import config as config_lib
from genjax import data, evaluate, lock, parallel, tasks, viz
from genjax.checkpoint import Checkpoints, library_versions
from genjax.errors import (CheckpointError, CheckpointSaveError, ConfigError,
                           CorruptCheckpointError, DistributedError, GenjaxError,
                           NonFiniteError, Preempted)
from genjax.preemption import StopSignal
from genjax.run import load_run

SAMPLE_STREAM = 0x5A4D  # Folded into the seed for the visuals' key (fixed over the run).


def enable_compilation_cache() -> None:
    """Turns on JAX's persistent compilation cache, so a rerun or a resumed run skips
    compiling. Respects a cache directory the user has already configured."""
    if jax.config.jax_compilation_cache_dir:
        return
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genjax" / "xla"
    path = os.environ.get("GENJAX_COMPILATION_CACHE", str(default))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _check_workdir_config(workdir: Path, config) -> None:
    """A workdir belongs to one model: resuming with a config that changes array shapes
    would mix incompatible runs, so it stops here, before anything is written."""
    path = workdir / "config.json"
    if not path.exists():
        return
    try:
        old = tasks.complete(ml_collections.ConfigDict(json.loads(path.read_text())))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not readable JSON ({e}). Restore it from the run "
                              "that created this workdir, or use a new --workdir.") from e
    diffs = tasks.shape_differences(old, config)
    if diffs:
        lines = ", ".join(f"{k}: {a!r} in the workdir vs {b!r} now" for k, (a, b) in diffs.items())
        raise ConfigError(
            f"The workdir {workdir} holds a run whose config differs in fields that change "
            f"the model's shapes ({lines}). Resume with the original values, or train the "
            "new config in another --workdir; the existing checkpoints were left untouched.")


def _resolve_auto(config, workdir: Path):
    """`config` with model.conv_impl='auto' resolved for this backend
    (`genjax.config.auto_conv_impl`): what the run uses and config.json records. The same
    backend always resolves the same way, so a resumed run continues exactly; resumed on
    another backend, it takes that backend's choice (the parameters and the function are
    the same, only speed and rounding change) and says so."""
    resolved = config_lib.resolve_auto(config, jax.default_backend())
    if resolved is config:
        return config
    chosen = resolved.model.conv_impl
    note = ""
    path = workdir / "config.json"
    try:
        recorded = json.loads(path.read_text())["model"]["conv_impl"] if path.exists() else None
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None  # _check_workdir_config has already read it; nothing to compare
    if recorded not in (None, chosen):
        note = (f"; this workdir's config.json recorded {recorded!r} (a run on another "
                f"backend or with another setting): continuing with {chosen!r}, not bitwise "
                f"as with {recorded!r} (pass --config.model.conv_impl={recorded} to keep it)")
    _say(f"model.conv_impl='auto' is {chosen!r} on {jax.default_backend()} at "
         f"{resolved.image_size}x{resolved.image_size}{note}.")
    return resolved


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class _Logger:
    """Console progress lines and TensorBoard scalars/images."""

    def __init__(self, workdir: Path, total_steps: int, global_batch: int, skipped: int = 0):
        self.writer = SummaryWriter(str(workdir))
        self.total, self.global_batch = total_steps, global_batch
        self.last_time, self.last_step = None, None
        self.skipped = skipped  # updates skipped so far (non-finite), to report new ones

    def start(self, step: int) -> None:
        self.last_time, self.last_step = time.perf_counter(), step

    def scalars(self, step: int, metrics: dict) -> dict:
        now = time.perf_counter()
        metrics = {k: float(v) for k, v in metrics.items()}
        speed = ""
        if step > self.last_step:  # the first step's time is compilation: no rate yet
            rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
            metrics["perf/steps_per_sec"] = rate
            metrics["perf/images_per_sec"] = rate * self.global_batch
            eta = _format_eta((self.total - step) / max(rate, 1e-9))
            speed = f"  {rate:.1f} steps/s  {rate * self.global_batch:.0f} img/s  ETA {eta}"
        self.last_time, self.last_step = now, step
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if not k.startswith("perf/"))
        print(f"step {step}/{self.total} ({100 * step / self.total:.0f}%){speed}  | {shown}",
              flush=True)
        skipped = int(metrics.get("train/skipped_updates", self.skipped))
        if skipped > self.skipped:
            logging.warning("Step %d: %d update(s) skipped since the last log line because the "
                            "loss or a gradient was not finite (%d in this run's history).",
                            step, skipped - self.skipped, skipped)
        self.skipped = skipped
        return metrics

    def evaluation(self, step: int, metrics: dict) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"eval step {step}  | {shown}", flush=True)

    def image(self, tag: str, step: int, grid: np.ndarray) -> None:
        self.writer.add_image(tag, grid, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def _say(*args) -> None:
    """A progress line: printed by process 0 only (the others run the same steps)."""
    if parallel.is_primary():
        print(*args, flush=True)


def _write_visuals(run, host_state, step: int) -> None:
    """The task's pictures of the fixed held-out batch (see the module docstring)."""
    key = jax.random.fold_in(jax.random.key(run.config.seed), SAMPLE_STREAM)
    for name, (images, columns) in run.task.visuals(host_state, run.held_out, key).items():
        images = np.asarray(images)
        grid = viz.image_grid(images, ncol=columns, scale=viz.legible_scale(images.shape[1]))
        file = f"step_{step:06d}.png" if name == "samples" else f"{name}_step_{step:06d}.png"
        viz.save_png(run.workdir / "samples" / file, grid)
        run.logger.image(name, step, grid)


def _best_tag(metric: str) -> str:
    """TensorBoard's name of the best figure so far: 'eval/fd' -> 'eval/best_fd'."""
    prefix, _, name = metric.rpartition("/")
    return f"{prefix}/best_{name}" if prefix else f"best_{name}"


def _evaluate(run, host_state, step: int) -> dict | None:
    """Runs the evaluators, logs their scalars and the best figure so far, and returns
    this step's quality record (None if its figure is missing or not finite). With
    several processes, process 0 evaluates and the others receive its record."""
    quality = run.evaluate.quality
    if not parallel.is_primary():
        value = parallel.broadcast_float(None)
        return None if value is None or quality is None else \
            {"metric": quality.metric, "value": value, "mode": quality.mode}
    scalars = run.evaluate(host_state, step)
    record = quality.record(scalars) if quality is not None else None
    if parallel.process_count() > 1:
        parallel.broadcast_float(None if record is None else record["value"])
    best = record if run.checkpoints.improves(record) else run.checkpoints.best()
    if best is not None:
        scalars[_best_tag(best["metric"])] = best["value"]
    run.logger.evaluation(step, scalars)
    return record


def _write_best_record(workdir: Path, checkpoints: Checkpoints) -> None:
    """Makes <workdir>/eval/best.json describe the committed best step (or removes a
    record whose step is gone, e.g. moved aside as corrupt)."""
    if not parallel.is_primary():
        return
    best = checkpoints.best()
    path = workdir / "eval" / "best.json"
    if best is not None:
        evaluate.write_best(workdir, best)
    elif path.exists():
        path.unlink()


def _checkpoint_meta(config, meta) -> dict:
    return {"task": config.task, "dataset": dataclasses.asdict(meta)}


# ------------------------------------------------------------------------- set-up


def _dataset_error(spec: data.DataSpec, error: data.DatasetNotAvailableError):
    return data.DatasetNotAvailableError(
        f"Config field 'dataset.name' is {spec.name!r} (dataset.data_dir "
        f"{spec.data_dir or 'unset: TFDS default'!r}): {error}")


def _dataset_meta(spec: data.DataSpec):
    """The dataset's shapes, or a clear error for an unknown name, before any JAX work."""
    try:
        return data.meta(spec)
    except data.DatasetNotAvailableError as e:
        raise _dataset_error(spec, e) from None


def _make_pipeline(spec: data.DataSpec, config, num_devices: int) -> data.Pipeline:
    """This process's share of the training batches (all of them with one process)."""
    first, rows = parallel.process_rows(config.batch_size)
    try:
        return data.training_pipeline(spec, global_batch_size=config.batch_size,
                                      num_devices=num_devices, seed=config.seed,
                                      num_processes=config.batch_size // rows,
                                      process_index=first // rows)
    except data.DatasetNotAvailableError as e:
        raise _dataset_error(spec, e) from None


def _held_out_batch(spec: data.DataSpec, task):
    """The fixed held-out batch the task's visuals draw from (None if it takes none, and
    on every process but process 0, which draws the pictures)."""
    if not task.held_out or not parallel.is_primary():
        return None
    try:
        return data.held_out_batch(spec, task.held_out, task.held_out_seed)
    except data.DatasetNotAvailableError as e:
        raise _dataset_error(spec, e) from None


def _unwritable(workdir: Path, error: OSError) -> CheckpointSaveError:
    return CheckpointSaveError(
        f"Cannot write to the workdir {workdir}: {type(error).__name__}: {error}. "
        "Pass a --workdir on a writable disk with free space.")


def _open_checkpoints(workdir: Path, config) -> Checkpoints:
    """The workdir's checkpoint manager; it also removes unfinished saves of a killed run."""
    try:
        return Checkpoints(workdir / "checkpoints", max_to_keep=config.keep_checkpoints)
    except OSError as e:
        raise _unwritable(workdir, e) from e


def _write_config(workdir: Path, config) -> None:
    if not parallel.is_primary():
        return
    try:
        (workdir / "config.json").write_text(config_lib.to_json(config))
    except OSError as e:
        raise _unwritable(workdir, e) from e


# ------------------------------------------------------------------------ restore


def _warn_if_versions_differ(saved: dict, step: int) -> None:
    before, now = saved.get("versions", {}), library_versions()
    diffs = [f"{k} {before.get(k)} -> {now.get(k)}" for k in sorted(set(before) | set(now))
             if before.get(k) != now.get(k)]
    if diffs:
        logging.warning(
            "Checkpoint step %d was written under other library versions (%s). Training "
            "continues, but do not expect it to be bitwise equal to a run that never "
            "changed versions.", step, ", ".join(diffs))


def _restore_step(checkpoints: Checkpoints, step: int, target, pipeline):
    """(state, saved meta) of `step`, with the pipeline put where that step left it."""
    state, data_state, saved = checkpoints.restore(step, target)
    try:
        pipeline.set_state(data_state)
    except Exception as e:  # a JSON file that parses but is not a pipeline state
        raise CorruptCheckpointError(
            f"Checkpoint step {step} in {checkpoints.directory} has an unusable input "
            f"pipeline state {data_state!r}: {type(e).__name__}: {e}") from e
    return state, saved


def _restore_newest(checkpoints: Checkpoints, target, pipeline, workdir: Path):
    """The newest checkpoint that reads back, as (state, step); None if there is none.

    Unreadable newer steps are moved aside only once an older one has restored, so a
    workdir in which nothing reads back is left exactly as it was.
    """
    unreadable = []
    for step in reversed(checkpoints.all_steps()):
        try:
            state, saved = _restore_step(checkpoints, step, target, pipeline)
        except CorruptCheckpointError as e:
            logging.warning("Skipping checkpoint step %d: %s", step, _shorten(str(e)))
            unreadable.append((step, e))
            continue
        for bad, _ in unreadable:  # by process 0; every process then sees them gone
            if parallel.is_primary():
                moved = checkpoints.move_aside(bad, workdir / "checkpoints_corrupt")
                logging.warning("Moved unreadable checkpoint step %d to %s (not deleted).",
                                bad, moved)
        if unreadable and parallel.process_count() > 1:
            parallel.sync("genjax_moved_aside")
            checkpoints.manager.reload()
        _warn_if_versions_differ(saved, step)
        return state, step
    if unreadable:
        details = "; ".join(f"step {s}: {_shorten(getattr(e, 'reason', str(e)), 200)}"
                            for s, e in unreadable)
        raise CheckpointError(
            f"No checkpoint in {checkpoints.directory} can be read back ({details}). Nothing "
            "was changed, and training will not silently start afresh over them: to start "
            f"from scratch in this workdir, move {checkpoints.directory} aside yourself; or "
            "train in a new --workdir.")
    return None


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def _restore_or_init(task, config, checkpoints: Checkpoints, pipeline, workdir: Path):
    state = task.init(config.seed)
    restored = _restore_newest(checkpoints, state, pipeline, workdir)
    if restored is not None:
        state, step = restored
        _say(f"Resumed from {checkpoints.directory}/{step} (step {int(state.step)}).")
    return state


# ----------------------------------------------------------------------- training


def _watch_nonfinite(train_step, limit: int):
    """`train_step`, also carrying `tripped`: the first step at which the streak of
    skipped (non-finite) updates reached `limit`, or 0. It lives on the devices, so
    watching costs no host synchronisation; the loop reads it at log and save steps."""

    def step(state, batch, tripped):
        state, metrics = train_step(state, batch)
        reached = (tripped == 0) & (state.nonfinite_streak >= limit)
        return state, metrics, jnp.where(reached, state.step, tripped)

    return step


class _Run(NamedTuple):
    """What the training loop's helpers share; all of it fixed for the run."""
    task: Any
    config: ml_collections.ConfigDict
    meta: Any
    checkpoints: Checkpoints
    logger: _Logger | None  # process 0's; None on the others
    workdir: Path
    evaluate: Any = None  # evaluate.make_evaluator's hook, or None: (host state, step) -> scalars
    held_out: Any = None  # the fixed held-out batch of the task's visuals (or None)


def _check_streak(run: _Run, step: int, tripped) -> None:
    """Stops a diverged run (see `_watch_nonfinite`) before it logs or saves more."""
    at = int(parallel.unreplicate(tripped))
    if not at:
        return
    limit = run.config.max_nonfinite_steps
    run.checkpoints.wait()
    kept = run.checkpoints.committed_steps()
    raise NonFiniteError(
        f"Stopped at step {step}: the updates of {limit} consecutive steps ({at - limit + 1} "
        f"to {at}) were all skipped because the loss or a gradient was not finite "
        f"(config field max_nonfinite_steps={limit}). Nothing was saved after step {at}; "
        f"the newest checkpoint is {kept[-1] if kept else 'none'}. Lower the learning rates "
        "or check the data, then rerun (it resumes from the newest checkpoint) or use a new "
        "--workdir.")


def _save(run: _Run, step: int, p_state, tripped, data_state, quality=None) -> None:
    _check_streak(run, step, tripped)  # never save a state from after the limit
    run.checkpoints.save(step, parallel.unreplicate(p_state), data_state,
                         _checkpoint_meta(run.config, run.meta), quality)


def _stop_now(run: _Run, stop: StopSignal, step: int) -> bool:
    """Whether to stop after `step` for a signal. One process: as soon as it has one.
    Several: when any has one, checked together (a collective) at the steps that are
    multiples of log_every_steps or checkpoint_every_steps, so all stop at one step."""
    if parallel.process_count() == 1:
        return stop.requested
    config = run.config
    if step % config.log_every_steps and step % config.checkpoint_every_steps:
        return False
    return parallel.any_process(stop.requested)


def _stop_on_signal(run: _Run, stop: StopSignal, step: int, saved: bool, p_state, tripped,
                    data_state) -> None:
    if not saved:
        _save(run, step, p_state, tripped, data_state)
    # A process stopping because another one was signalled reports SIGTERM's status,
    # so that a scheduler requeues the whole job.
    name, signum = (stop.name, stop.signum) if stop.requested else \
        ("a stop signal to another process", signal.SIGTERM)
    print(f"{name}: waiting for checkpoint step {step} to be committed ...", flush=True)
    run.checkpoints.wait()
    raise Preempted(
        f"Stopped by {name} at step {step}/{run.config.num_train_steps}; checkpoint step "
        f"{step} is committed in {run.checkpoints.directory}. Run the same command again to "
        "continue from there.", signum)


def _train(run: _Run, state, pipeline) -> Any:
    config, total = run.config, run.config.num_train_steps
    start = int(state.step)
    p_state = parallel.replicate(state)
    del state  # the device copy is the live one; keep no stale host copy around
    tripped = parallel.replicate(np.zeros((), np.int32))
    p_step = parallel.pmap(_watch_nonfinite(run.task.train_step, config.max_nonfinite_steps))
    draw_every = config.get("sample_every_steps", 0)  # a config without it draws nothing
    batches = parallel.prefetch((batch, pipeline.get_state()) for batch in pipeline)
    t0 = time.perf_counter()
    with StopSignal() as stop:
        processes = parallel.process_count()
        where = (f"{parallel.device_count()} device(s)" if processes == 1 else
                 f"{parallel.global_device_count()} devices ({processes} processes x "
                 f"{parallel.device_count()})")
        _say(f"Training {config.task} on {config.dataset.name} ({run.meta.image_shape}) "
             f"for steps {start + 1}..{total} on {where}; "
             f"workdir {run.workdir}")  # from here on, signals stop cleanly
        for step in range(start + 1, total + 1):
            batch, data_state = next(batches)
            p_state, metrics, tripped = p_step(p_state, batch, tripped)
            if step == start + 1:
                jax.block_until_ready(metrics)  # the first step includes compilation
                _say(f"First step (compilation included) took "
                     f"{time.perf_counter() - t0:.1f}s.")
                if run.logger is not None:
                    run.logger.start(step)
            if step % config.log_every_steps == 0 or step == total:
                if run.logger is not None:
                    run.logger.scalars(step, parallel.unreplicate(metrics))
                _check_streak(run, step, tripped)
            if draw_every and run.logger is not None and (step % draw_every == 0
                                                          or step == total):
                _write_visuals(run, parallel.unreplicate(p_state), step)
            evaluated = None  # this step's quality record, if it was evaluated
            if run.evaluate is not None and (step % config.eval_every_steps == 0
                                             or step == total):
                evaluated = _evaluate(run, parallel.unreplicate(p_state), step)
            new_best = evaluated is not None and run.checkpoints.improves(evaluated)
            saved = step % config.checkpoint_every_steps == 0 or step == total or new_best
            if saved:
                _save(run, step, p_state, tripped, data_state, evaluated)
            if new_best:  # eval/best.json names only a committed step
                run.checkpoints.wait()
                _write_best_record(run.workdir, run.checkpoints)
            if step < total and _stop_now(run, stop, step):  # at the last step, finish
                _stop_on_signal(run, stop, step, saved, p_state, tripped, data_state)
        run.checkpoints.wait()
    return parallel.unreplicate(p_state)


def _primary_first(fn):
    """`fn()`, run by process 0 before the others when there are several (it may write a
    shared folder, e.g. prepare an embedded dataset); if it fails there, every process
    stops."""
    if not parallel.multiprocess():
        return fn()
    error = None
    if parallel.is_primary():
        try:
            result = fn()
        except GenjaxError as e:
            error = e
    if parallel.any_process(error is not None):
        if error is not None:
            raise error
        raise DistributedError("Process 0 of this run stopped with an error (its message "
                               "says which); every process stops.")
    return result if parallel.is_primary() else fn()


@contextlib.contextmanager
def _hold_workdir(workdir: Path):
    """`lock.hold(workdir)`, taken by process 0 alone when there are several (the
    workdir is shared); if it cannot, every process stops with an error."""
    if not parallel.multiprocess():
        with lock.hold(workdir):
            yield
        return
    with contextlib.ExitStack() as stack:
        error = None
        if parallel.is_primary():
            try:
                stack.enter_context(lock.hold(workdir))
            except GenjaxError as e:
                error = e
        if parallel.any_process(error is not None):
            if error is not None:
                raise error
            raise DistributedError(
                f"Process 0 of this run could not take the workdir {workdir} (its message "
                "says why, e.g. another run is using it); every process stops.")
        yield


def train_evaluation_classifier(config: ml_collections.ConfigDict, where) -> None:
    """Trains the evaluation classifier of `config`'s dataset in `where`
    (`genjax.evaluate.extractors.classifier_config`: configs/classifier.py's recipe),
    saying so, where, and how long it took. Once per dataset: later evaluations load it."""
    where = Path(where)
    classifier = evaluate.extractors.classifier_config(config)
    _say(f"No evaluation classifier in {where} ({where.absolute()}): training one there now "
         f"on {classifier.dataset.name!r} with configs/classifier.py's recipe "
         f"({classifier.num_train_steps} steps at {classifier.image_size}x"
         f"{classifier.image_size}; about 40 s on 2 CPU cores for the embedded digits). "
         "Later evaluations reuse it; to use another, pass --extractor_workdir or set "
         "eval.classifier_workdir.")
    start = time.perf_counter()
    train_and_evaluate(classifier, where)
    report = where / "eval" / "classifier.json"
    accuracy = json.loads(report.read_text()).get("test_accuracy") if report.exists() else None
    _say(f"Trained the evaluation classifier in {where} in {time.perf_counter() - start:.0f} s"
         + (f" (test accuracy {accuracy:.4f})." if accuracy is not None else "."))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> object:
    """Trains `config` in `workdir`, resuming from its newest checkpoint if there is one.

    Returns the final state on the host (numpy arrays), e.g. for a notebook to sample.
    Raises a `GenjaxError` for anything a user can fix: `ConfigError`,
    `DatasetNotAvailableError` and `CheckpointError` before anything is written,
    `CheckpointSaveError`, `NonFiniteError` or `Preempted` (SIGTERM/SIGINT) during
    training, each after the newest checkpoint is committed.
    """
    workdir = Path(workdir)
    config = tasks.complete(config)  # a config file written before fields were added
    module = tasks.validate(config)  # pure: no JAX, no disk
    _check_workdir_config(workdir, config)
    spec = module.data_spec(config)
    meta = _primary_first(lambda: _dataset_meta(spec))  # it may prepare an embedded dataset
    num_devices = parallel.device_count()
    tasks.validate(config, parallel.global_device_count())
    config = _resolve_auto(config, workdir)
    pipeline = _make_pipeline(spec, config, num_devices)
    enable_compilation_cache()
    # The task may load another run its config names (a VAE's eval.compare_workdir).
    task = module.make(config, meta, load_run=load_run)
    if config.get("eval_every_steps", 0):
        # The default feature extractor (runs/classifier_<dataset>) is trained first if it
        # is missing, as `python -m genjax.evaluate` does; a named one that is missing
        # fails here, in make_evaluator, before anything is written.
        where = evaluate.missing_classifier(config, task)
        if where is not None:
            train_evaluation_classifier(config, where)
    evaluator = evaluate.make_evaluator(config, task, workdir)
    held_out = _held_out_batch(spec, task)

    with _hold_workdir(workdir):  # one live run per workdir, from before the first write
        checkpoints = _open_checkpoints(workdir, config)
        logger = None
        try:
            state = _restore_or_init(task, config, checkpoints, pipeline, workdir)
            _write_config(workdir, config)
            _write_best_record(workdir, checkpoints)  # the best survives a resume
            if parallel.is_primary():
                logger = _Logger(workdir, config.num_train_steps, config.batch_size,
                                 int(state.skipped))
            return _train(_Run(task, config, meta, checkpoints, logger, workdir, evaluator,
                               held_out), state, pipeline)
        finally:
            checkpoints.close()
            if logger is not None:
                logger.close()
