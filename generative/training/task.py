"""The Task protocol: what a method tells the one train loop (generative.training.loop).

The loop knows nothing about diffusion, graphs or any method (like EDM's training loop, which never
knows which loss it runs, and VDM's abstract Experiment). A task is built from the run's config
and provides:

* `init(key, example_batch) -> {group: params}`: every parameter group. The groups named in
  `trainable` get an optimiser and EMAs; the others are frozen (e.g. a teacher restored from
  another run with `generative.training.checkpoint.load_run`): kept in the checkpoint, never
  differentiated.
* `phases() -> [Phase(group, loss_fn, repeats)]`: the update phases of one train step, in order.
  Each phase updates only its group with `loss_fn(params, frozen, batch, key) -> (loss, metrics)`,
  where `params` holds every trainable group (its own one being differentiated) and `frozen` the
  frozen groups, the EMAs as '<group>.<ema name>' and the optimiser step as 'step'. Alternating
  updates (a fake-score network between generator steps, a discriminator) are just more phases;
  `repeats` k runs a phase k times per step (on the same batch, with fresh keys).
* `emas() -> {group: {name: ema rule}}` (default: config.ema as 'ema' on every trainable group;
  several rates at once are several names). Sampling uses each group's 'ema'.
* `sample(params, key, num, **options)`: samples for grids and evaluation (`params` as given by
  `sampling_params`: EMA weights and frozen groups); `save_samples(path, samples)` pictures them.
* `evaluators()`: the names of generative.training.evaluation.EVALUATORS to run (config.eval).
* `train_batches(start_step, batch_size, process_index, process_count)`: this host's batches
  from step `start_step` on, a pure function of the config and the step (so resume is exact), and
  `example_batch()`.

Tasks register by name in TASKS (config.task.name) as 'module:Class', imported on first use.
"""

import dataclasses
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import ml_collections

LossFn = Callable[..., tuple[Any, dict]]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One update of a train step: `group` by loss_fn(params, frozen, batch, key), `repeats`
    times."""

    group: str
    loss_fn: LossFn
    repeats: int = 1

    def __post_init__(self):
        if self.repeats < 1:
            raise ValueError(f"Phase {self.group!r}: repeats must be >= 1, got {self.repeats}")


class Task(Protocol):
    config: ml_collections.ConfigDict
    trainable: tuple[str, ...]

    def init(self, key, example_batch) -> dict: ...

    def phases(self) -> list[Phase]: ...

    def emas(self) -> dict[str, dict[str, ml_collections.ConfigDict]]: ...

    def sample(self, params: dict, key, num: int, **options): ...

    def save_samples(self, path: str, samples) -> None: ...

    def evaluators(self) -> tuple[str, ...]: ...

    def num_eval_samples(self) -> int: ...

    def example_batch(self) -> dict: ...

    def train_batches(
        self, start_step: int, batch_size: int, process_index: int, process_count: int
    ) -> Iterator[dict]: ...


class TaskBase:
    """Defaults shared by the tasks: one EMA (config.ema) per trainable group and the evaluators
    listed in config.eval.evaluators."""

    trainable: tuple[str, ...] = ("net",)

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    def emas(self):
        return {group: {"ema": self.config.ema} for group in self.trainable}

    def evaluators(self):
        return tuple(self.config.eval.evaluators)

    def num_eval_samples(self) -> int:
        return self.config.eval.num_samples


TASKS = {
    "cd": "generative.consistency.tasks:ConsistencyDistillation",
    "ct": "generative.consistency.tasks:ConsistencyTraining",
    "diffusion": "generative.training.diffusion_task:DiffusionTask",
    "digress": "generative.graphs.tasks:DigressTask",
    "ect": "generative.consistency.tasks:EasyConsistencyTuning",
    "graph_diffusion": "generative.graphs.tasks:AdjacencyDiffusionTask",
    "ict": "generative.consistency.tasks:ImprovedConsistencyTraining",
    "scd": "generative.consistency.tasks:ContinuousConsistencyDistillation",
    "sct": "generative.consistency.tasks:ContinuousConsistencyTraining",
}


def register_task(name: str, target: str | type) -> None:
    """Adds a task class (or its 'module:Class' path) under `name`."""
    TASKS[name] = target


def task_class(name: str) -> type:
    if name not in TASKS:
        raise ValueError(f"config.task.name: unknown task {name!r}; known: {sorted(TASKS)}")
    target = TASKS[name]
    if isinstance(target, str):
        module, cls = target.split(":")
        target = getattr(importlib.import_module(module), cls)
    return target


def create_task(config: ml_collections.ConfigDict) -> Task:
    """The task named config.task.name, built from `config` (which it validates)."""
    return task_class(config.task.name)(config)
