"""Orbax checkpoints of the TrainState: keep the newest N, atomic writes, resume from the latest,
save on SIGTERM or Ctrl-C, restore matching groups into another task, and `load_run`.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact and `latest_step` never returns a partial one.
Orbax's own INFO lines (dozens per save) are filtered out; one line per save is logged instead.
"""

import json
import logging as std_logging
import os
import signal
import time
import typing

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging


class _DropOrbaxInfo(std_logging.Filter):
    def filter(self, record):
        return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def quiet_orbax() -> None:
    """Drops orbax's INFO/DEBUG records (about 44 lines per save) from the absl log."""
    logger = logging.get_absl_logger()
    if not any(isinstance(f, _DropOrbaxInfo) for f in logger.filters):
        logger.addFilter(_DropOrbaxInfo())


class Checkpointer:
    """Saves and restores TrainStates under `directory` (kept: the newest `max_to_keep`)."""

    def __init__(self, directory: str, max_to_keep: int = 3):
        if max_to_keep < 1:
            raise ValueError(f"training.keep_checkpoints must be >= 1, got {max_to_keep}")
        quiet_orbax()
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        """Saves `state` as checkpoint `step` and waits until it is on disk (no-op if it already
        exists)."""
        if step in self.manager.all_steps():
            return
        start = time.perf_counter()
        self.manager.save(step, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()
        logging.info("saved checkpoint %d in %.1f s", step, time.perf_counter() - start)

    def restore(self, like, step: int | None = None):
        """The checkpoint `step` (default: the latest) with the structure, dtypes and shardings of
        `like`, or None when there is none."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def restore_raw(self, step: int | None = None) -> dict:
        """The checkpoint as saved (nested dicts of arrays), without a target structure."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"no checkpoint in {self.directory}")
        return self.manager.restore(step, args=ocp.args.StandardRestore())

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _same_shapes(a, b) -> bool:
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(x.shape == y.shape for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def restore_matching(state, saved: dict):
    """`state` with every parameter group (and its EMAs) replaced by the group of the same name
    and shapes in `saved` (a raw checkpoint, e.g. of another task); the step and optimiser states
    stay fresh. Logs what was restored and what was skipped."""
    saved_groups = {**saved.get("frozen", {}), **saved.get("params", {})}
    params, frozen, ema = dict(state.params), dict(state.frozen), dict(state.ema)
    restored, skipped = [], []
    for target in (params, frozen):
        for name, value in target.items():
            if name in saved_groups and _same_shapes(value, saved_groups[name]):
                target[name] = jax.tree.map(
                    lambda s, v: jax.device_put(s, v.sharding).astype(v.dtype),
                    saved_groups[name],
                    value,
                )
                restored.append(name)
            else:
                skipped.append(name)
    for group, averages in ema.items():
        ema[group] = {name: params[group] for name in averages}
        for name in averages:
            source = saved.get("ema", {}).get(group, {}).get(name)
            if source is not None and _same_shapes(averages[name], source):
                ema[group][name] = jax.tree.map(
                    lambda s, v: jax.device_put(s, v.sharding).astype(v.dtype),
                    source,
                    averages[name],
                )
    unused = sorted(set(saved_groups) - set(restored))
    logging.info(
        "initialised groups %s from the checkpoint; skipped (no group of that name and shape) %s; "
        "unused in the checkpoint %s",
        restored,
        skipped,
        unused,
    )
    return state.replace(params=params, frozen=frozen, ema=ema)


class TerminationFlag:
    """Records SIGTERM (a preempted TPU VM, a cluster's job end) and the first Ctrl-C (SIGINT) so
    the loop can checkpoint and stop at the next step boundary instead of dying mid-step; a second
    Ctrl-C interrupts at once. Restores the previous handlers on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        del frame
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self):
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        return False


class LoadedRun(typing.NamedTuple):
    """A trained run: its config, its task, its TrainState and the weights to sample from."""

    config: ml_collections.ConfigDict
    task: typing.Any
    state: typing.Any

    @property
    def params(self) -> dict:
        return self.state.sampling_params()


def read_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"{workdir!r} holds no config.json; train there first (experiments.train)")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def load_run(workdir: str, step: int | None = None) -> LoadedRun:
    """The run trained in `workdir` (its config.json and checkpoint `step`, default the latest),
    e.g. to sample it from one's own code or to load a teacher:

        run = load_run("workdirs/digits_edm")
        denoise = run.task.denoiser(run.params)
    """
    from generative.training.loop import Run  # the loop imports this module

    run = Run(read_config(workdir), workdir)
    if run.checkpointer.latest_step() is None:
        raise ValueError(f"{workdir!r} holds no checkpoint yet")
    return LoadedRun(run.config, run.task, run.restore(step))
