"""A trained run, loaded back: what notebooks, CLIs and evaluators use.

    config, task, state = genjax.load_run('runs/dcgan')                # the newest step
    config, task, state = genjax.load_run('runs/dcgan', step='best')   # the best evaluated

`load_run` rebuilds the task from the workdir's config.json (validated against its
task's schema) and the dataset shapes saved with the checkpoint, then restores the state
into that task's shapes. Runs written by earlier versions of genjax load the same way:
the saved state is a plain dict of arrays keyed by field names, and the schema of each
task only grows (configs saved before a field existed lack it, which is valid).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from genjax import config as config_lib
from genjax import tasks, viz
from genjax.checkpoint import Checkpoints
from genjax.data.pipeline import DatasetMeta
from genjax.errors import CheckpointError, ConfigError

CHECKPOINT_CHOICES = ("latest", "best")


def parse_checkpoint(text: str) -> int | str:
    """A command line's --checkpoint: 'latest', 'best' or a step number."""
    text = str(text).strip()
    if text in CHECKPOINT_CHOICES:
        return text
    if text.isdigit():
        return int(text)
    raise ConfigError(f"--checkpoint={text!r} is not a checkpoint: pass 'latest' (the "
                      "default, the newest step), 'best' (the step with the best evaluation "
                      "figure) or a step number from the workdir's checkpoints/ folder.")


def _resolve_step(checkpoints: Checkpoints, workdir: Path, step: int | str | None) -> int:
    """The step number `step` (None or 'latest', 'best', or a number) names."""
    if isinstance(step, str):
        step = parse_checkpoint(step)
    steps = checkpoints.all_steps()
    if not steps:
        raise CheckpointError(f"{workdir}/checkpoints holds no finished checkpoint yet. "
                              "Train first (python train.py ... --workdir=this dir).")
    if step is None or step == "latest":
        return steps[-1]
    if step == "best":
        best = checkpoints.best()
        if best is None:
            raise CheckpointError(
                f"{workdir} has no best checkpoint: none of its checkpoints (steps "
                f"{steps}) was saved after an evaluation, as happens when a run trains with "
                "eval_every_steps=0 (the default) or was trained by a genjax that did not "
                "keep the best. To keep the best, train with evaluation on, e.g. "
                "--config.eval_every_steps=500 (running the same command with it resumes "
                "this workdir and keeps the best of the steps evaluated from then on); for "
                "now, take --checkpoint=latest or one of those steps.")
        return best["step"]
    if int(step) not in steps:
        raise CheckpointError(f"{workdir}/checkpoints has no step {step!r}; it holds steps "
                              f"{steps}. Pass one of them, 'latest' or 'best'.")
    return int(step)


def load_run(workdir, step: int | str | None = None):
    """(config, task, host state) of a run's checkpoint: the newest unless `step` is a
    step number or 'best' (the step with the best evaluation figure, see eval/best.json)."""
    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{workdir} has no config.json: it is not a genjax workdir. "
                              "Pass the --workdir that train.py used.")
    config = tasks.complete(config_lib.from_json(config_path.read_text()))
    tasks.validate(config)
    checkpoints = Checkpoints(workdir / "checkpoints", read_only=True)
    try:
        step = _resolve_step(checkpoints, workdir, step)
        saved = checkpoints.metadata(step)["dataset"]
        meta = DatasetMeta(**{**saved, "image_shape": tuple(saved["image_shape"])})
        task = tasks.make(config, meta)
        target = jax.eval_shape(task.init, config.seed)
        state, _, _ = checkpoints.restore(step, target)
    finally:
        checkpoints.close()
    return config, task, state


def sample_from_workdir(workdir, num: int, seed: int = 0,
                        step: int | str | None = None) -> np.ndarray:
    """`num` generated images, uint8 NHWC, from the run's newest checkpoint, or `step` as
    `load_run` takes it (its task's `sample` function: a GAN's or a VAE's)."""
    _, task, state = load_run(workdir, step)
    images = task.sample(state, jax.random.key(seed), num)
    return viz.to_uint8(images)


def sample_conditioned_from_workdir(workdir, *, labels=None, per_class: int | None = None,
                                    seed: int = 0, step: int | str | None = None
                                    ) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 NHWC, labels int32 [N]) from a conditional run's checkpoint: one image
    of each class in `labels` (a sequence of ints), or `per_class` images of every class
    (0, ..., 0, 1, ..., K-1), through its task's `sample_conditioned(state, key, labels)`.
    The noise is drawn from jax.random.key(seed), so the same (seed, labels, checkpoint)
    give the same bytes."""
    from genjax.errors import ConfigError

    if (labels is None) == (per_class is None):
        raise ConfigError("Ask for classes either one by one (--labels=3,3,7) or per class "
                          "(--per_class=100), not both and not neither.")
    if per_class is not None and per_class < 1:
        raise ConfigError(f"--per_class must be at least 1, got {per_class}.")
    config, task, state = load_run(workdir, step)
    if "sample_conditioned" not in task.functions:
        raise ConfigError(
            f"{workdir} holds a {config.task!r} run, which is not conditional: it cannot "
            "make images of requested classes. Drop --labels/--per_class (and use --num), or "
            "pass the workdir of a conditional run (e.g. configs/cgan.py).")
    num_classes = int(task.num_classes)
    if per_class is not None:
        labels = np.repeat(np.arange(num_classes), per_class)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if labels.size == 0:
        raise ConfigError("No labels given: pass at least one class, e.g. --labels=3,3,7.")
    bad = sorted({int(y) for y in labels if not 0 <= y < num_classes})
    if bad:
        raise ConfigError(
            f"Label(s) {bad} out of range: this run's dataset {config.dataset.name!r} has "
            f"{num_classes} classes, 0 to {num_classes - 1}.")
    labels = labels.astype(np.int32)
    images = task.sample_conditioned(state, jax.random.key(seed), labels)
    return viz.to_uint8(images), labels


def sample_captions_from_workdir(workdir, captions, num: int, *, seed: int = 0,
                                 step: int | str | None = None
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 NHWC, captions str [N]) from a text-to-image run's checkpoint: `num`
    images of each caption in `captions` (caption by caption), through its task's
    `sample_captions(state, tokens, key)`. The noise is drawn from jax.random.key(seed).
    A caption with a word outside the run's vocabulary is a ConfigError naming the word
    (the run never saw it, so its picture would ignore it)."""
    from genjax.data.text import UNKNOWN, words

    captions = [str(c).strip() for c in captions]
    if not captions or not all(captions):
        raise ConfigError("No caption given (or an empty one): pass --caption=\"a thin green "
                          "three\" or a --captions_file with one caption per line.")
    if num < 1:
        raise ConfigError(f"--num must be at least 1, got {num}.")
    config, task, state = load_run(workdir, step)
    if "sample_captions" not in task.functions:
        raise ConfigError(
            f"{workdir} holds a {config.task!r} run, which does not draw from captions: "
            "drop --caption/--captions_file (and use --num), or pass the workdir of a "
            "text-to-image run (configs/text2image.py).")
    tokenizer = task.tokenizer
    for caption in captions:
        unknown = [w for w, t in zip(words(caption), tokenizer.encode(caption))
                   if t == UNKNOWN]
        if unknown:
            known = ", ".join(tokenizer.vocabulary[2:])
            raise ConfigError(
                f"Caption {caption!r} has word(s) outside this run's vocabulary: "
                f"{', '.join(sorted(set(unknown)))}. The model never saw them; rephrase "
                f"with the words it knows: {known}.")
        if len(words(caption)) > tokenizer.max_tokens:
            raise ConfigError(f"Caption {caption!r} has {len(words(caption))} words; this "
                              f"run reads at most {tokenizer.max_tokens}. Shorten it.")
    repeated = [c for c in captions for _ in range(num)]
    tokens = np.stack([tokenizer.encode(c) for c in repeated])
    images = task.sample_captions(state, tokens, jax.random.key(seed))
    return viz.to_uint8(images), np.array(repeated)
