"""Tasks: every model family is a module `genjax/tasks/<name>.py`, found by `config.task`.

A task module defines
  defaults() -> ConfigDict        the family's schema, starting from `genjax.config.base`,
                                  every field commented
  validate(config)                the family's own checks (the generic ones are
                                  `genjax.config.check`; `validate` below runs both)
  SHAPE_FIELDS                    its fields whose change changes the state's shapes
  data_spec(config) -> DataSpec   which features a batch carries, and from where
  make(config, meta, *, load_run=None) -> Task
and, where no shared one fits, its state class (a `flax.struct.dataclass` of arrays with
`step`, `key`, `skipped` and `nonfinite_streak`, see `genjax.state`). There is no list
of tasks: `module(name)` imports `genjax.tasks.<name>`, so a new family is a new module.

A `Task` is what `make` returns:
  init(seed) -> state                             host pytree of arrays
  train_step(state, batch) -> (state, metrics)    runs under `parallel.pmap`
  visuals(state, batch, key) -> {name: (images [N, H, W, C] in [-1, 1], columns)}
      the pictures the loop draws every `sample_every_steps`, from one fixed held-out
      `batch` of `held_out` examples (None when `held_out` is 0); {} for none
  evaluators: {name: Evaluation}                  what genjax.evaluate measures, and with
                                                  which of the task's functions
  held_out, held_out_seed                         the size and seed of that batch
  functions: {name: function or constant}         the family's own (sample, generate,
      encode, decode, classify, interpolate, log_likelihood, ...), for notebooks and
      CLIs; read as attributes (`task.sample(state, key, num)`).
Everything after `train_step` runs on one device, in evaluation mode.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from types import ModuleType
from typing import Any, Callable, Mapping, NamedTuple

import ml_collections

from genjax import config as config_lib
from genjax.errors import ConfigError


class Evaluation(NamedTuple):
    """One evaluator a task declares (as big_vision's `config.evals`): the measurement,
    by its name in `genjax.evaluate.MEASURES` ('generative', 'classification',
    'autoencoding'), the task functions it calls, by the role the measurement gives them
    (e.g. {'sample': task.sample}), and its options."""
    measure: str
    functions: Mapping[str, Callable]
    options: Mapping[str, Any] = {}


class MissingFunction(ConfigError, AttributeError):
    """A task function the task does not have (e.g. `sample` of a classifier)."""


def no_visuals(state, batch, key) -> dict:
    """The visuals of a task that draws no pictures."""
    del state, batch, key
    return {}


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    init: Callable[[int], Any]
    train_step: Callable[[Any, dict], tuple[Any, dict]]
    visuals: Callable[[Any, Any, Any], dict] = no_visuals
    evaluators: Mapping[str, Evaluation] = dataclasses.field(default_factory=dict)
    held_out: int = 0
    held_out_seed: int = 0
    functions: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __getattr__(self, name: str):
        functions = self.__dict__.get("functions", {})
        if name in functions:
            return functions[name]
        raise MissingFunction(
            f"Task {self.__dict__.get('name')!r} has no function {name!r}; it has: "
            f"{', '.join(sorted(functions)) or 'none'}.")


def available() -> list[str]:
    """The task modules in this package (every public module of genjax/tasks/)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def module(name: str) -> ModuleType:
    """The task module `genjax.tasks.<name>`; a ConfigError for an unknown name."""
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_") \
            or name not in available():
        raise ConfigError(
            f"config.task={name!r} is not a genjax task. Valid choices: "
            f"{', '.join(available())} (the modules of genjax/tasks/). Start your config "
            "from one of the files under configs/.")
    return importlib.import_module(f"{__name__}.{name}")


def validate(config, num_devices: int | None = None) -> ModuleType:
    """The generic checks and the task's own, before any JAX work; returns the module."""
    if "task" not in config:
        raise ConfigError("The config has no 'task' field; start from a file under configs/.")
    task = module(config.task)
    # A task's networks take images up to its MAX_IMAGE_SIZE (the DCGAN body's 128 unless
    # it says otherwise).
    config_lib.check(config, task.defaults(), num_devices,
                     max_image_size=getattr(task, "MAX_IMAGE_SIZE", 128))
    task.validate(config)
    return task


def defaults(name: str):
    return module(name).defaults()


def complete(config):
    """`config` with the fields this version of its task added since it was written (a
    workdir's config.json, a config file of an older version), at their defaults; each
    new field's default keeps the behaviour the config had. Only missing fields are
    added: a misspelt or mistyped one is left for `validate` to report. A config of an
    unknown task is returned as it is."""
    if "task" not in config or config.task not in available():
        return config
    out = ml_collections.ConfigDict(config.to_dict())
    for name, value in config_lib.flatten(defaults(config.task)).items():
        *sections, leaf = name.split(".")
        node = out
        for section in sections:
            if section not in node:
                node[section] = ml_collections.ConfigDict()
            node = node[section]
            if not isinstance(node, ml_collections.ConfigDict):
                break  # a mistyped section: validate names it
        else:
            if leaf not in node:
                node[leaf] = value
    return out


def data_spec(config):
    return module(config.task).data_spec(config)


def make(config, meta, *, load_run=None) -> Task:
    """The task `config.task` names, built for a dataset of `meta`'s shapes."""
    return module(config.task).make(config, meta, load_run=load_run)


def shape_differences(old, new) -> dict:
    """Fields whose change between two configs of a workdir changes the state's shapes."""
    fields = module(new.task).SHAPE_FIELDS
    if "task" in old and old.task != new.task and old.task in available():
        fields = (*fields, *module(old.task).SHAPE_FIELDS)
    return config_lib.shape_differences(old, new, fields)
