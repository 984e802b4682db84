"""The generic training loop: any task, any dataset, any number of local devices.

`train_and_evaluate(config, workdir)` initialises or restores the state, feeds
batches from the input pipeline to the `pmap`ped step, and every so often logs
scalars, writes a fixed-noise sample grid and saves a checkpoint (train state + the
pipeline's position), so that running it again resumes exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging
from tensorboardX import SummaryWriter

from genjax import config as config_lib
from genjax import data, parallel, tasks, viz
from genjax.checkpoint import Checkpoints
from genjax.errors import CheckpointError, ConfigError

SAMPLE_STREAM = 0x5A4D  # Folded into the seed for the fixed sample-grid noise.


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


def _data_dir(config) -> str | None:
    return config.dataset.data_dir or None


def _check_workdir_config(workdir: Path, config) -> None:
    """A workdir belongs to one model: resuming with a config that changes array shapes
    would mix incompatible runs, so it stops here, before anything is written."""
    path = workdir / "config.json"
    if not path.exists():
        return
    try:
        old = ml_collections.ConfigDict(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not readable JSON ({e}). Restore it from the run "
                              "that created this workdir, or use a new --workdir.") from e
    diffs = config_lib.shape_differences(old, config)
    if diffs:
        lines = ", ".join(f"{k}: {a!r} in the workdir vs {b!r} now" for k, (a, b) in diffs.items())
        raise ConfigError(
            f"The workdir {workdir} holds a run whose config differs in fields that change "
            f"the model's shapes ({lines}). Resume with the original values, or train the "
            "new config in another --workdir; the existing checkpoints were left untouched.")


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class _Logger:
    """Console progress lines and TensorBoard scalars/images."""

    def __init__(self, workdir: Path, total_steps: int, global_batch: int):
        self.writer = SummaryWriter(str(workdir))
        self.total, self.global_batch = total_steps, global_batch
        self.last_time, self.last_step = None, None

    def start(self, step: int) -> None:
        self.last_time, self.last_step = time.perf_counter(), step

    def scalars(self, step: int, metrics: dict) -> dict:
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics["perf/steps_per_sec"] = rate
        metrics["perf/images_per_sec"] = rate * self.global_batch
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if not k.startswith("perf/"))
        eta = _format_eta((self.total - step) / max(rate, 1e-9))
        print(f"step {step}/{self.total} ({100 * step / self.total:.0f}%)  "
              f"{rate:.1f} steps/s  {rate * self.global_batch:.0f} img/s  ETA {eta}  | {shown}",
              flush=True)
        return metrics

    def image(self, tag: str, step: int, grid: np.ndarray) -> None:
        self.writer.add_image(tag, grid, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def _write_samples(task, host_state, config, workdir: Path, step: int, logger) -> Path:
    key = jax.random.fold_in(jax.random.key(config.seed), SAMPLE_STREAM)
    images = task.sample(host_state, key, config.num_sample_images)
    grid = viz.image_grid(images, scale=viz.legible_scale(config.image_size))
    path = viz.save_png(workdir / "samples" / f"step_{step:06d}.png", grid)
    logger.image("samples", step, grid)
    return path


def _checkpoint_meta(config, meta) -> dict:
    return {"task": config.task, "dataset": dataclasses.asdict(meta)}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> object:
    """Trains `config` in `workdir`, resuming from its newest checkpoint if there is one.

    Returns the final state on the host (numpy arrays), e.g. for a notebook to sample.
    """
    workdir = Path(workdir)
    num_devices = parallel.device_count()
    config_lib.validate(config, num_devices)
    _check_workdir_config(workdir, config)
    meta = data.dataset_meta(config.dataset.name, data_dir=_data_dir(config))
    pipeline = data.make_pipeline(
        config.dataset.name, config.dataset.split, global_batch_size=config.batch_size,
        num_devices=num_devices, image_size=config.image_size, seed=config.seed,
        data_dir=_data_dir(config))
    enable_compilation_cache()
    task = tasks.make(config, meta)

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config_lib.to_json(config))
    checkpoints = Checkpoints(workdir / "checkpoints", max_to_keep=config.keep_checkpoints)
    state = task.init(config.seed)
    start = checkpoints.latest_step()
    if start is not None:
        state, data_state, _ = checkpoints.restore(start, state)
        pipeline.set_state(data_state)
        print(f"Resumed from {checkpoints.directory}/{start} (step {int(state.step)}).", flush=True)
    start = int(state.step)

    p_state = parallel.replicate(state)
    del state  # the device copy is the live one; keep no stale host copy around
    p_step = parallel.pmap(task.train_step)
    batches = parallel.prefetch((batch, pipeline.get_state()) for batch in pipeline)
    logger = _Logger(workdir, config.num_train_steps, config.batch_size)
    total = config.num_train_steps
    print(f"Training {config.task} on {config.dataset.name} ({meta.image_shape}) "
          f"for steps {start + 1}..{total} on {num_devices} device(s); workdir {workdir}",
          flush=True)
    t0 = time.perf_counter()
    try:
        for step in range(start + 1, total + 1):
            batch, data_state = next(batches)
            p_state, metrics = p_step(p_state, batch)
            if step == start + 1:
                jax.block_until_ready(metrics)  # the first step includes compilation
                print(f"First step (compilation included) took "
                      f"{time.perf_counter() - t0:.1f}s.", flush=True)
                logger.start(step)
            if step % config.log_every_steps == 0 or step == total:
                host = logger.scalars(step, parallel.unreplicate(metrics))
                if not np.isfinite(host["d/loss"]) and not np.isfinite(host["g/loss"]):
                    logging.warning("Non-finite losses at step %d.", step)
            if step % config.sample_every_steps == 0 or step == total:
                _write_samples(task, parallel.unreplicate(p_state), config, workdir, step, logger)
            if step % config.checkpoint_every_steps == 0 or step == total:
                checkpoints.save(step, parallel.unreplicate(p_state), data_state,
                                 _checkpoint_meta(config, meta))
        checkpoints.wait()
    finally:
        checkpoints.close()
        logger.close()
    return parallel.unreplicate(p_state)
