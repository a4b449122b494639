"""Orbax checkpoints of the TrainState: keep the newest N, atomic writes, verified reads with a
fallback, resume from the latest, save on SIGTERM or Ctrl-C, restore matching groups into another
task, and `load_run`.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact and `latest_step` never returns a partial one.
Each checkpoint holds two items: 'state' (the TrainState) and 'checksums' (the CRC-32 of every
array's bytes, by leaf path). Nothing non-finite is ever saved. A read first compares the stored
shapes and dtypes with the expected ones (a mismatch names the differing arrays), then checks the
values' finiteness and checksums; a newest checkpoint that cannot be read or fails a check is
reported, moved to `<directory>.damaged/`, and the previous one is used.
Orbax's own INFO lines (dozens per save) are filtered out; one line per save is logged instead.
"""

import logging as std_logging
import os
import shutil
import signal
import time
import typing
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from generative.training.errors import CheckpointError, CheckpointMismatchError, NonFiniteError
from generative.training.workdir import read_config


class _DropOrbaxInfo(std_logging.Filter):
    def filter(self, record):
        return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def quiet_orbax() -> None:
    """Drops orbax's INFO/DEBUG records (about 44 lines per save) from the absl log."""
    logger = logging.get_absl_logger()
    if not any(isinstance(f, _DropOrbaxInfo) for f in logger.filters):
        logger.addFilter(_DropOrbaxInfo())


def _leaf_name(path) -> str:
    """'opt_state/net/0/mu/dense/kernel': the same for a TrainState and for its raw restore."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _named_leaves(tree) -> dict:
    return {_leaf_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def host_arrays(tree) -> dict[str, np.ndarray]:
    """{leaf name: this host's NumPy copy} of the arrays this host holds whole (replicated ones;
    an array sharded over hosts is left out)."""
    out = {}
    for name, x in _named_leaves(tree).items():
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                continue
            x = x.addressable_data(0)
        out[name] = np.asarray(x)
    return out


def _checksums(arrays: dict) -> dict[str, int]:
    return {name: zlib.crc32(np.ascontiguousarray(a).tobytes()) for name, a in arrays.items()}


def _listed(names, limit: int = 3) -> str:
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def nonfinite_counts(arrays: dict) -> dict[str, int]:
    """{name: number of NaN/inf values} of the floating-point arrays that have any."""
    counts = {}
    for name, a in arrays.items():
        if jnp.issubdtype(a.dtype, jnp.inexact):
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a.astype(np.float32))))
            if bad:
                counts[name] = bad
    return counts


def _describe_nonfinite(counts: dict) -> str:
    return f"{sum(counts.values())} non-finite values in " + _listed(
        f"{name} ({count})" for name, count in counts.items()
    )


def _brief(error: Exception) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first[:200]}"


def _fits(stored: dict, expected: dict) -> list[str]:
    """What differs between the stored array metadata and the expected ShapeDtypeStructs."""
    problems = []
    for name, want in expected.items():
        have = stored.get(name)
        if have is None:
            problems.append(f"{name} is not in the checkpoint")
        elif tuple(have.shape) != tuple(want.shape) or np.dtype(have.dtype) != np.dtype(want.dtype):
            problems.append(
                f"{name} is {np.dtype(have.dtype).name}{list(have.shape)} there, the config gives "
                f"{np.dtype(want.dtype).name}{list(want.shape)}"
            )
    problems += [f"{name} is in the checkpoint only" for name in stored if name not in expected]
    return problems


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
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "checksums": ocp.JsonCheckpointHandler(),
            },
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def last_good(self) -> str:
        """Where the run can be resumed from, in words (for error messages)."""
        step = self.latest_step()
        if step is None:
            return "no checkpoint has been saved yet"
        return f"the last good checkpoint, step {step} in {self.directory}, is kept"

    def save(self, step: int, state) -> None:
        """Saves `state` as checkpoint `step` with its checksums and waits until it is on disk
        (no-op if it already exists); NonFiniteError, saving nothing, if any value is NaN/inf."""
        if step in self.manager.all_steps():
            return
        start = time.perf_counter()
        arrays = host_arrays(state)
        bad = nonfinite_counts(arrays)
        if bad:
            raise NonFiniteError(
                f"step {step}: the state has {_describe_nonfinite(bad)}; not saved, and "
                f"{self.last_good()}"
            )
        items = ocp.args.Composite(
            state=ocp.args.StandardSave(state), checksums=ocp.args.JsonSave(_checksums(arrays))
        )
        self.manager.save(step, args=items)
        self.manager.wait_until_finished()
        logging.info("saved checkpoint %d in %.1f s", step, time.perf_counter() - start)

    def restore(self, like=None, step: int | None = None):
        """Checkpoint `step` (default: the newest usable one) with the structure, dtypes and
        shardings of `like` (arrays or ShapeDtypeStructs; None: as saved, nested dicts), or None
        when there is no checkpoint. A requested step must exist and pass its checks; without one,
        checkpoints that fail are reported, set aside, and the next older one is tried."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        if step is not None:
            if step not in steps:
                raise CheckpointError(
                    f"checkpoint {step} is not in {self.directory}; the steps there are "
                    f"{sorted(steps) or 'none'}"
                )
            return self._read(step, like)
        failed = []
        for candidate in steps:
            try:
                state = self._read(candidate, like)
            except CheckpointMismatchError:
                raise
            except CheckpointError as e:
                failed.append((candidate, str(e)))
                continue
            if failed:
                self._set_aside([s for s, _ in failed])
                logging.warning(
                    "restored checkpoint %d instead of %s: %s (set aside in %s.damaged)",
                    candidate,
                    _listed(str(s) for s, _ in failed),
                    "; ".join(problem for _, problem in failed),
                    self.directory,
                )
            return state
        if failed:
            raise CheckpointError(
                f"no usable checkpoint in {self.directory}: " + "; ".join(p for _, p in failed)
            )
        return None

    def _read(self, step: int, like):
        where = f"checkpoint {step} in {self.directory}"
        try:
            stored = _named_leaves(self.manager.item_metadata(step)["state"].tree)
        except Exception as e:
            raise CheckpointError(f"{where} cannot be read ({_brief(e)})") from e
        if like is None:
            target = ocp.args.StandardRestore()
        else:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
            problems = _fits(stored, _named_leaves(abstract))
            if problems:
                raise CheckpointMismatchError(
                    f"{where} does not fit the config: {_listed(problems)}"
                )
            target = ocp.args.StandardRestore(abstract)
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=target, checksums=ocp.args.JsonRestore())
            )
        except Exception as e:
            raise CheckpointError(f"{where} cannot be read ({_brief(e)})") from e
        arrays = host_arrays(restored["state"])
        bad = nonfinite_counts(arrays)
        if bad:
            raise CheckpointError(f"{where} reads with {_describe_nonfinite(bad)}")
        expected, actual = restored["checksums"], _checksums(arrays)
        wrong = [name for name in actual if expected.get(name, actual[name]) != actual[name]]
        if wrong:
            raise CheckpointError(f"{where} fails the checksums of {_listed(wrong)}")
        return restored["state"]

    def _set_aside(self, steps) -> None:
        """Moves the step directories out of the manager's sight (one host does it)."""
        if jax.process_index() == 0:
            aside = self.directory + ".damaged"
            os.makedirs(aside, exist_ok=True)
            for step in steps:
                target = os.path.join(aside, f"{step}.{int(time.time())}")
                shutil.move(os.path.join(self.directory, str(step)), target)
        self.manager.reload()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _same_shapes(a, b) -> bool:
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(x.shape == y.shape for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def restore_matching(state, saved: dict, *, from_ema: bool = False):
    """`state` with every parameter group (and its EMAs) replaced by the group of the same name
    and shapes in `saved` (a raw checkpoint, e.g. of another task); the step and optimiser states
    stay fresh. from_ema: a trainable group and all its EMAs start from the saved group's
    sampling EMA 'ema' (where it has one) instead. Logs what was restored and what was
    skipped."""
    saved_groups = {**saved.get("frozen", {}), **saved.get("params", {})}
    if from_ema:
        for group, averages in saved.get("ema", {}).items():
            if "ema" in averages:
                saved_groups[group] = averages["ema"]
        saved = {**saved, "ema": {}}
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
        # copies: the train step donates the state, and one buffer may not be donated twice
        ema[group] = {name: jax.tree.map(jnp.copy, params[group]) for name in averages}
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


def load_run(workdir: str, step: int | None = None) -> LoadedRun:
    """The run trained in `workdir` (its config.json and checkpoint `step`, default the latest),
    e.g. to sample it from one's own code or to load a teacher:

        run = load_run("workdirs/digits_edm")
        denoise = run.task.denoiser(run.params)
    """
    from generative.training.loop import Run  # the loop imports this module

    run = Run(read_config(workdir), workdir)
    if run.checkpointer.latest_step() is None:
        raise CheckpointError(f"{workdir!r} holds no checkpoint yet")
    return LoadedRun(run.config, run.task, run.restore(step))
